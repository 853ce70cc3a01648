//! The lifecycles of devices (SPEC §6), alarms (SPEC §8), operations and campaigns (SPEC §9),
//! attestation verdicts, and the severity scale alarms and security events share. Which
//! transitions are allowed is decided here, once.

use crate::wire_enum::wire_enum;

wire_enum!(
    /// Where a device stands (SPEC §6).
    DeviceStatus {
        /// Registered, never connected.
        Registered = "registered",
        Active = "active",
        /// Every credential revoked; connections refused until reinstated.
        Revoked = "revoked",
        /// Connections refused until the quarantine is lifted (SPEC §10).
        Quarantined = "quarantined",
    }
);

impl DeviceStatus {
    /// Why a device in this status may not connect, or `None` when it may.
    pub fn connect_refusal(self) -> Option<&'static str> {
        match self {
            DeviceStatus::Revoked => Some("device revoked"),
            DeviceStatus::Quarantined => Some("device quarantined"),
            DeviceStatus::Registered | DeviceStatus::Active => None,
        }
    }

    /// Whether new credentials (tokens, certificates) may be issued to a device in this status.
    pub fn may_get_credentials(self) -> bool {
        self.connect_refusal().is_none()
    }
}

wire_enum!(
    /// Where an alarm stands (SPEC §8): ACTIVE → ACKNOWLEDGED → CLEARED, or ACTIVE → CLEARED.
    AlarmStatus {
        Active = "ACTIVE",
        Acknowledged = "ACKNOWLEDGED",
        Cleared = "CLEARED",
    }
);

impl AlarmStatus {
    /// The statuses an alarm may be in for a person to move it to `self`; empty when people
    /// cannot set `self` (an alarm becomes ACTIVE only when its device raises it).
    pub fn reachable_from(self) -> &'static [AlarmStatus] {
        match self {
            AlarmStatus::Acknowledged => &[AlarmStatus::Active],
            AlarmStatus::Cleared => &[AlarmStatus::Active, AlarmStatus::Acknowledged],
            AlarmStatus::Active => &[],
        }
    }
}

wire_enum!(
    /// Where a remote operation stands (SPEC §9): PENDING → EXECUTING → SUCCESSFUL | FAILED.
    /// A cancelled or timed-out operation is FAILED with a reason.
    OperationStatus {
        Pending = "PENDING",
        Executing = "EXECUTING",
        Successful = "SUCCESSFUL",
        Failed = "FAILED",
    }
);

impl OperationStatus {
    /// The statuses an operation may be in for its device to move it to `self`: a device only
    /// moves its operations forward (it may skip EXECUTING). Empty for PENDING.
    pub fn device_may_move_from(self) -> &'static [OperationStatus] {
        match self {
            OperationStatus::Pending => &[],
            OperationStatus::Executing => &[OperationStatus::Pending],
            OperationStatus::Successful | OperationStatus::Failed => {
                &[OperationStatus::Pending, OperationStatus::Executing]
            }
        }
    }

    /// Whether the operation is over (SUCCESSFUL or FAILED).
    pub fn is_final(self) -> bool {
        matches!(self, OperationStatus::Successful | OperationStatus::Failed)
    }

    /// The statuses a timeout fails: the device has not finished.
    pub const UNFINISHED: &'static [OperationStatus] = &[OperationStatus::Pending, OperationStatus::Executing];
}

wire_enum!(
    /// Where a firmware campaign stands (SPEC §9): running wave by wave, paused (by a person,
    /// or by itself past its failure threshold), cancelled, or completed.
    CampaignStatus {
        Running = "running",
        Paused = "paused",
        Cancelled = "cancelled",
        Completed = "completed",
    }
);

impl CampaignStatus {
    /// The statuses a campaign may be in for a person or the campaign runner to move it to
    /// `self`; cancelled and completed are final.
    pub fn reachable_from(self) -> &'static [CampaignStatus] {
        match self {
            CampaignStatus::Running => &[CampaignStatus::Paused],
            CampaignStatus::Paused => &[CampaignStatus::Running],
            CampaignStatus::Cancelled => &[CampaignStatus::Running, CampaignStatus::Paused],
            CampaignStatus::Completed => &[CampaignStatus::Running],
        }
    }
}

wire_enum!(
    /// The verdict on a device's last attestation (SPEC §9), compared with the tenant's
    /// firmware repository.
    AttestationStatus {
        /// The reported hash is an image of the repository and secure boot is on.
        Trusted = "trusted",
        /// The hash is not in the repository, or secure boot is off.
        Untrusted = "untrusted",
        /// Nothing to judge by: no report yet, or the repository is empty.
        Unknown = "unknown",
    }
);

wire_enum!(
    /// How bad something is: alarms (SPEC §7) and security events (SPEC §10) share the scale.
    Severity {
        Critical = "CRITICAL",
        Major = "MAJOR",
        Minor = "MINOR",
        Warning = "WARNING",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_nothing_else_parses() {
        for status in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(status.as_str()), Some(*status));
        }
        for severity in Severity::ALL {
            assert_eq!(Severity::parse(severity.as_str()), Some(*severity));
        }
        assert_eq!(DeviceStatus::parse("Active"), None);
        assert_eq!(AlarmStatus::parse("active"), None);
        assert_eq!(Severity::parse(""), None);
        for status in OperationStatus::ALL {
            assert_eq!(OperationStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(OperationStatus::parse("pending"), None);
        for status in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(status.as_str()), Some(*status));
            assert!(!status.reachable_from().contains(status), "{status} does not move to itself");
        }
        assert!(CampaignStatus::Cancelled.reachable_from().iter().all(|from| *from != CampaignStatus::Completed));
        assert_eq!(AttestationStatus::parse("trusted"), Some(AttestationStatus::Trusted));
    }

    #[test]
    fn alarm_transitions() {
        assert_eq!(AlarmStatus::Acknowledged.reachable_from(), [AlarmStatus::Active]);
        assert_eq!(AlarmStatus::Cleared.reachable_from(), [AlarmStatus::Active, AlarmStatus::Acknowledged]);
        assert!(AlarmStatus::Active.reachable_from().is_empty());
    }

    #[test]
    fn only_registered_and_active_devices_connect() {
        let may_connect: Vec<_> = DeviceStatus::ALL.iter().filter(|s| s.connect_refusal().is_none()).collect();
        assert_eq!(may_connect, [&DeviceStatus::Registered, &DeviceStatus::Active]);
    }

    #[test]
    fn devices_move_operations_forward_only() {
        use OperationStatus::*;
        assert!(Pending.device_may_move_from().is_empty());
        assert_eq!(Executing.device_may_move_from(), [Pending]);
        for done in [Successful, Failed] {
            assert_eq!(done.device_may_move_from(), [Pending, Executing]);
            assert!(done.is_final());
        }
        for open in [Pending, Executing] {
            assert!(!open.is_final());
            assert!(OperationStatus::UNFINISHED.contains(&open));
        }
    }
}
