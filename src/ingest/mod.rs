//! Detection intake: vendor parsers (OfficeScan/Apex Central CEF, SEPM risk log, ePO EPOEvent
//! XML), syslog framing, and the ePO Web API poller.
