# A small image with `qlab` and the scenario library: what a CI matrix or a Kubernetes Indexed
# Job runs (README, "Runs beyond one machine"). Build: docker build -t qlab-lab .
# Run a shard: docker run --rm -v "$PWD/out:/lab/reports" qlab-lab run --shard 1/4 --report-dir reports/shard-1

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# The commit report.json names (build.rs); the context has no .git: pass --build-arg QLAB_GIT_SHA=$(git rev-parse HEAD).
ARG QLAB_GIT_SHA=
ENV QLAB_GIT_SHA=${QLAB_GIT_SHA}
COPY src src
COPY benches benches
# src/bench embeds sample payloads from fixtures/.
COPY fixtures fixtures
RUN cargo build --release --locked --bin qlab && strip target/release/qlab

FROM debian:bookworm-slim
# A non-root user owns /lab; the lab needs no capability and no network beyond loopback.
RUN useradd --create-home --uid 10001 lab
COPY --from=build /src/target/release/qlab /usr/local/bin/qlab
WORKDIR /lab
# Scenario files name their topology relative to themselves (../../fixtures/...).
COPY --chown=lab scenarios scenarios
COPY --chown=lab fixtures fixtures
COPY --chown=lab reports/baselines reports/baselines
USER lab
ENTRYPOINT ["qlab"]
CMD ["run", "--help"]
