//! Brute force and IP blocks (SPEC §10): failed logins and failed device connects are counted
//! per source address; the failures of one address within the tenant's window (default 10 in
//! 60 s) block it on every listener for the tenant's block duration (default 15 minutes). The
//! listeners ask [`Platform::is_blocked`] when a TCP connection arrives, before TLS. Addresses
//! in `--ids-exempt` ranges are never blocked but still raise `brute_force`. Bounded: at most
//! [`MAX_TRACKED`] addresses are tracked; past that the quietest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::PoisonError;

use rampart_core::{
    AuditAction, Cidr, DetectionPolicy, PLATFORM_TENANT, Permission, SecurityEventType, Severity, canonical_ip,
};
use serde_json::json;

use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;
use crate::security_events::SecurityEventDraft;

/// Most addresses whose failures or blocks are remembered at once.
pub const MAX_TRACKED: usize = 100_000;

/// A blocked address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub ip: IpAddr,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Failures counted when it was blocked.
    pub failures: u32,
    /// The tenant whose threshold was passed (the platform's for unknown tenants).
    pub tenant: String,
}

#[derive(Default)]
pub(crate) struct IpBlocks {
    failures: HashMap<IpAddr, VecDeque<i64>>,
    blocks: HashMap<IpAddr, IpBlock>,
    exempt: Vec<Cidr>,
}

impl IpBlocks {
    pub(crate) fn new(exempt: Vec<Cidr>) -> Self {
        IpBlocks { exempt, ..IpBlocks::default() }
    }

    fn forget_quietest(&mut self) {
        if self.failures.len() < MAX_TRACKED {
            return;
        }
        let mut by_last: Vec<(i64, IpAddr)> =
            self.failures.iter().map(|(ip, times)| (times.back().copied().unwrap_or(0), *ip)).collect();
        by_last.sort_unstable();
        for (_, ip) in by_last.into_iter().take(MAX_TRACKED / 8 + 1) {
            self.failures.remove(&ip);
        }
    }
}

/// What one counted failure led to.
enum Outcome {
    Counted,
    Blocked(IpBlock),
    /// Past the threshold, but the address is exempt.
    Exempt(u32),
}

impl Platform {
    fn blocks(&self) -> std::sync::MutexGuard<'_, IpBlocks> {
        self.ip_blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether connections from `ip` are refused now (cheap: the listeners ask at accept).
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let now = self.now_ms();
        let mut blocks = self.blocks();
        match blocks.blocks.get(&ip) {
            Some(block) if block.until_ms > now => true,
            Some(_) => {
                blocks.blocks.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Counts a failed login or device connect from `source_ip` (for `tenant`, when the
    /// attempt named an existing one) and blocks the address past the tenant's threshold.
    pub(crate) async fn note_auth_failure(&self, source_ip: Option<&str>, tenant: Option<&str>) {
        let Some(ip) = source_ip.and_then(|text| text.parse::<IpAddr>().ok()).map(canonical_ip) else { return };
        let (owner, policy) = match tenant {
            Some(tenant) => match self.tenant_policy_for(tenant).await {
                Ok(policy) => (tenant.to_owned(), policy.detection),
                Err(_) => (PLATFORM_TENANT.to_owned(), DetectionPolicy::default()),
            },
            None => (PLATFORM_TENANT.to_owned(), DetectionPolicy::default()),
        };
        let outcome = self.count_failure(ip, &owner, &policy);
        let (blocked, failures) = match outcome {
            Outcome::Counted => return,
            Outcome::Blocked(block) => (true, block.failures),
            Outcome::Exempt(failures) => (false, failures),
        };
        let mut draft = SecurityEventDraft::new(&owner, SecurityEventType::BruteForce, Severity::Major);
        draft.source_ip = Some(ip.to_string());
        draft.details = json!({
            "failures": failures,
            "window_s": policy.failed_auth_window_s,
            "blocked": blocked,
            "blocked_for_s": if blocked { policy.block_duration_s } else { 0 },
            "exempt": !blocked,
        });
        self.raise_security_event(draft).await;
    }

    fn count_failure(&self, ip: IpAddr, owner: &str, policy: &DetectionPolicy) -> Outcome {
        let now = self.now_ms();
        let window_ms = i64::from(policy.failed_auth_window_s) * 1000;
        let threshold = policy.failed_auth_threshold.max(1) as usize;
        let mut state = self.blocks();
        if state.blocks.get(&ip).is_some_and(|block| block.until_ms > now) {
            return Outcome::Counted;
        }
        state.forget_quietest();
        let times = state.failures.entry(ip).or_default();
        times.push_back(now);
        while times.front().is_some_and(|first| *first <= now - window_ms) || times.len() > threshold {
            times.pop_front();
        }
        if times.len() < threshold {
            return Outcome::Counted;
        }
        let failures = times.len() as u32;
        times.clear();
        if state.exempt.iter().any(|range| range.contains(ip)) {
            return Outcome::Exempt(failures);
        }
        let block = IpBlock {
            ip,
            since_ms: now,
            until_ms: now + i64::from(policy.block_duration_s) * 1000,
            failures,
            tenant: owner.to_owned(),
        };
        if state.blocks.len() >= MAX_TRACKED {
            state.blocks.retain(|_, block| block.until_ms > now);
        }
        state.blocks.insert(ip, block.clone());
        tracing::warn!(%ip, tenant = owner, failures, "address blocked after repeated authentication failures");
        Outcome::Blocked(block)
    }

    /// The blocks in force that the principal may see (`security:read`): the platform
    /// tenant's administrators see every block, a tenant the blocks its own threshold set.
    pub async fn ip_blocks(&self, principal: &Principal) -> ServiceResult<Vec<IpBlock>> {
        self.authorize(principal, Permission::SecurityRead).await?;
        let now = self.now_ms();
        let mut blocks: Vec<IpBlock> = self
            .blocks()
            .blocks
            .values()
            .filter(|block| block.until_ms > now)
            .filter(|block| principal.tenant == PLATFORM_TENANT || block.tenant == principal.tenant)
            .cloned()
            .collect();
        blocks.sort_by_key(|block| std::cmp::Reverse(block.since_ms));
        Ok(blocks)
    }

    /// Lifts a block (`security:write`, audited); `NotFound` for a block the principal does
    /// not see.
    pub async fn lift_ip_block(&self, principal: &Principal, ip: &str) -> ServiceResult<()> {
        self.authorize(principal, Permission::SecurityWrite).await?;
        let ip = ip.parse::<IpAddr>().map(canonical_ip).map_err(|_| ServiceError::NotFound)?;
        let lifted = {
            let mut state = self.blocks();
            let visible = state
                .blocks
                .get(&ip)
                .is_some_and(|block| principal.tenant == PLATFORM_TENANT || block.tenant == principal.tenant);
            if visible {
                state.failures.remove(&ip);
            }
            visible.then(|| state.blocks.remove(&ip)).flatten()
        };
        let Some(block) = lifted else { return Err(ServiceError::NotFound) };
        let details = json!({"ip": ip.to_string(), "until_ms": block.until_ms});
        self.audit_by(principal, AuditAction::IpBlockLift, format!("ip:{ip}"), details).await;
        Ok(())
    }
}

impl std::fmt::Debug for IpBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpBlocks").field("blocks", &self.blocks.len()).field("tracked", &self.failures.len()).finish()
    }
}
