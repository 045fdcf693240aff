//! report.json, junit.xml and summary.md.
