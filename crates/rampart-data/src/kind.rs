//! What a device published, named after the topic suffix of SPEC §7.

/// The platform data topics a device publishes to (`devices/{id}/<suffix>`).
///
/// `devices/{id}/operations/{op}/status` is not here: operations belong to a later issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// `telemetry`: measurements.
    Telemetry,
    /// `events`: typed events; a `security.` type also raises a security event.
    Events,
    /// `alarms`: raise, repeat or clear an alarm.
    Alarms,
    /// `attestation`: firmware and secure-boot report.
    Attestation,
    /// `twin/reported`: JSON merge patch of the reported state.
    TwinReported,
}

impl DataKind {
    /// The kind for what follows `devices/{id}/` in a topic, e.g. `"telemetry"` or
    /// `"twin/reported"`; `None` for anything else.
    pub fn from_topic_suffix(suffix: &str) -> Option<DataKind> {
        match suffix {
            "telemetry" => Some(DataKind::Telemetry),
            "events" => Some(DataKind::Events),
            "alarms" => Some(DataKind::Alarms),
            "attestation" => Some(DataKind::Attestation),
            "twin/reported" => Some(DataKind::TwinReported),
            _ => None,
        }
    }

    /// The topic suffix, the inverse of [`DataKind::from_topic_suffix`].
    pub fn topic_suffix(self) -> &'static str {
        match self {
            DataKind::Telemetry => "telemetry",
            DataKind::Events => "events",
            DataKind::Alarms => "alarms",
            DataKind::Attestation => "attestation",
            DataKind::TwinReported => "twin/reported",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DataKind;

    #[test]
    fn suffixes_round_trip() {
        for kind in
            [DataKind::Telemetry, DataKind::Events, DataKind::Alarms, DataKind::Attestation, DataKind::TwinReported]
        {
            assert_eq!(DataKind::from_topic_suffix(kind.topic_suffix()), Some(kind));
        }
        assert_eq!(DataKind::from_topic_suffix("operations/1/status"), None);
        assert_eq!(DataKind::from_topic_suffix("twin/desired"), None);
    }
}
