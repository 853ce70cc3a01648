//! The registries of what the platform records: every audit action (SPEC §11) and every
//! security-event type (SPEC §10). Nothing is recorded under a name that is not listed here
//! (the tidy test checks that no other crate spells one out).

use crate::wire_enum::wire_enum;

wire_enum!(
    /// What an audit record says happened.
    AuditAction {
        AuthLogin = "auth.login",
        AuthLockout = "auth.lockout",
        AccessDenied = "access.denied",
        MfaEnroll = "mfa.enroll",
        MfaEnable = "mfa.enable",
        TenantCreate = "tenant.create",
        TenantDelete = "tenant.delete",
        UserCreate = "user.create",
        UserUpdate = "user.update",
        UserDelete = "user.delete",
        UserPasswordChange = "user.password_change",
        RoleCreate = "role.create",
        RoleDelete = "role.delete",
        GroupCreate = "group.create",
        GroupDelete = "group.delete",
        ApiKeyCreate = "api_key.create",
        ApiKeyDelete = "api_key.delete",
        DeviceCreate = "device.create",
        DeviceUpdate = "device.update",
        DeviceDelete = "device.delete",
        DeviceRevoke = "device.revoke",
        DeviceReinstate = "device.reinstate",
        DeviceQuarantine = "device.quarantine",
        DeviceQuarantineLift = "device.quarantine_lift",
        DeviceTokenCreate = "device_token.create",
        DeviceTokenDelete = "device_token.delete",
        CertificateIssue = "certificate.issue",
        TrustedCaRegistrationCode = "trusted_ca.registration_code",
        TrustedCaCreate = "trusted_ca.create",
        TrustedCaDelete = "trusted_ca.delete",
        PolicyUpdate = "policy.update",
        TopicPolicyUpdate = "topic_policy.update",
        KeysRotateTenant = "keys.rotate_tenant",
        KeysRotateMaster = "keys.rotate_master",
        AlarmUpdate = "alarm.update",
        OperationCreate = "operation.create",
        OperationCancel = "operation.cancel",
        TwinDesiredUpdate = "twin.desired_update",
        FirmwareUpload = "firmware.upload",
        FirmwareKeyCreate = "firmware_key.create",
        FirmwareKeyDelete = "firmware_key.delete",
        CampaignCreate = "campaign.create",
        CampaignPause = "campaign.pause",
        CampaignResume = "campaign.resume",
        CampaignCancel = "campaign.cancel",
        AdvisoryImport = "advisory.import",
        IpBlockLift = "ip_block.lift",
        AuditExport = "audit.export",
    }
);

wire_enum!(
    /// The kind of a security event (SPEC §10).
    SecurityEventType {
        AuthFailure = "auth_failure",
        BruteForce = "brute_force",
        AclViolation = "acl_violation",
        RateLimited = "rate_limited",
        MessageRateAnomaly = "message_rate_anomaly",
        PayloadAnomaly = "payload_anomaly",
        DuplicateConnection = "duplicate_connection",
        RevokedCredentialUsed = "revoked_credential_used",
        UntrustedFirmware = "untrusted_firmware",
        SecureBootDisabled = "secure_boot_disabled",
        Tamper = "tamper",
        FirewallBlock = "firewall_block",
        Quarantine = "quarantine",
        /// A device reported a `security.<type>` event of a type not listed above.
        DeviceSecurityEvent = "device_security_event",
        /// A tenant's quota (retained messages, persistent sessions, twin size) refused something.
        QuotaExceeded = "quota_exceeded",
    }
);

impl SecurityEventType {
    /// The types a device may report about itself as a `security.<type>` event.
    pub const DEVICE_REPORTABLE: &'static [SecurityEventType] = &[
        SecurityEventType::Tamper,
        SecurityEventType::PayloadAnomaly,
        SecurityEventType::UntrustedFirmware,
        SecurityEventType::SecureBootDisabled,
    ];

    /// The type of a device's `security.<suffix>` event: a reportable type, or
    /// [`SecurityEventType::DeviceSecurityEvent`].
    pub fn reported_by_device(suffix: &str) -> SecurityEventType {
        SecurityEventType::DEVICE_REPORTABLE
            .iter()
            .copied()
            .find(|reportable| reportable.as_str() == suffix)
            .unwrap_or(SecurityEventType::DeviceSecurityEvent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for action in AuditAction::ALL {
            assert!(seen.insert(action.as_str()), "{action} twice");
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
        }
        for kind in SecurityEventType::ALL {
            assert_eq!(SecurityEventType::parse(kind.as_str()), Some(*kind));
        }
    }

    #[test]
    fn devices_report_known_types_or_a_generic_one() {
        assert_eq!(SecurityEventType::reported_by_device("tamper"), SecurityEventType::Tamper);
        assert_eq!(SecurityEventType::reported_by_device("acl_violation"), SecurityEventType::DeviceSecurityEvent);
    }
}
