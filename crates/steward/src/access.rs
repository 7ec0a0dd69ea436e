//! Who is acting, and what they may see. Every domain operation receives an
//! [`Actor`] and asks it before touching data; the checks live here, once.
//!
//! Scope: an account belongs to one tenant and acts inside it. Operators and
//! DPOs whose account belongs to the provider's own tenant are the provider's
//! staff and act across tenants. The CLI acts as the local administrator (whoever
//! can run it already holds the data directory and the master key).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// An end user: self-service about themself.
    Subject,
    /// The employer: manages its users and directory, sees its tenant's server data.
    TenantAdmin,
    /// Provider staff: runs the service.
    Operator,
    /// Data protection officer: requests, policy, audit.
    Dpo,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Subject => "subject",
            Role::TenantAdmin => "tenant-admin",
            Role::Operator => "operator",
            Role::Dpo => "dpo",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "subject" => Ok(Role::Subject),
            "tenant-admin" => Ok(Role::TenantAdmin),
            "operator" => Ok(Role::Operator),
            "dpo" => Ok(Role::Dpo),
            other => Err(Error::invalid(
                "role",
                format!("unknown role {other:?}: expected subject, tenant-admin, operator or dpo"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    Account(Role),
    /// The `steward` command line, run by someone with access to the data directory.
    Cli,
    /// Steward itself (scheduled jobs).
    System,
}

#[derive(Debug, Clone)]
pub struct Actor {
    /// How the actor appears in the audit log: `account:<id>`, `cli:<os user>`, `system:<job>`.
    pub audit_id: String,
    pub kind: ActorKind,
    pub account_id: Option<String>,
    pub tenant_id: Option<String>,
    pub subject_id: Option<String>,
    /// Operator or DPO of the provider's own tenant.
    pub provider_staff: bool,
}

impl Actor {
    pub fn cli() -> Actor {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
        Actor {
            audit_id: format!("cli:{user}"),
            kind: ActorKind::Cli,
            account_id: None,
            tenant_id: None,
            subject_id: None,
            provider_staff: true,
        }
    }

    pub fn system(job: &str) -> Actor {
        Actor {
            audit_id: format!("system:{job}"),
            kind: ActorKind::System,
            account_id: None,
            tenant_id: None,
            subject_id: None,
            provider_staff: true,
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self.kind {
            ActorKind::Account(r) => Some(r),
            _ => None,
        }
    }

    pub fn role_name(&self) -> &'static str {
        match self.kind {
            ActorKind::Account(r) => r.as_str(),
            ActorKind::Cli => "cli",
            ActorKind::System => "system",
        }
    }

    fn is_local(&self) -> bool {
        matches!(self.kind, ActorKind::Cli | ActorKind::System)
    }

    /// Passes for the CLI and for accounts holding one of `roles`.
    pub fn require_role(&self, roles: &[Role], what: &str) -> Result<()> {
        if self.is_local() || self.role().is_some_and(|r| roles.contains(&r)) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "your role ({}) may not {what}",
            self.role_name()
        )))
    }

    /// Provider staff (or the CLI) only.
    pub fn require_provider_staff(&self, what: &str) -> Result<()> {
        if self.provider_staff {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "only the provider's staff may {what}"
            )))
        }
    }

    pub fn sees_tenant(&self, tenant_id: &str) -> bool {
        self.provider_staff || self.tenant_id.as_deref() == Some(tenant_id)
    }

    /// Fails with NotFound (never Forbidden) for another tenant's objects, so ids
    /// cannot be probed across tenants.
    pub fn require_tenant(&self, tenant_id: &str, what: &str) -> Result<()> {
        if self.sees_tenant(tenant_id) {
            Ok(())
        } else {
            Err(Error::NotFound(what.to_owned()))
        }
    }

    /// Whether this actor may see a subject of `tenant_id`: their own record, or,
    /// for staff and employers, any subject in scope.
    pub fn require_subject(&self, tenant_id: &str, subject_id: &str) -> Result<()> {
        self.require_tenant(tenant_id, "subject")?;
        if self.role() == Some(Role::Subject) && self.subject_id.as_deref() != Some(subject_id) {
            return Err(Error::NotFound("subject".into()));
        }
        Ok(())
    }

    pub fn is_self(&self, subject_id: &str) -> bool {
        self.subject_id.as_deref() == Some(subject_id)
    }
}
