//! Tenants: the provider's business customers (the employers), plus the
//! provider's own tenant, which holds its staff and its direct contacts
//! (website visitors, enquiries).

use serde::Serialize;
use steward_store::{Row, params};
use utoipa::ToSchema;

use crate::access::Actor;
use crate::audit::Event;
use crate::core::Steward;
use crate::error::{Error, Result};

pub const PROVIDER_TENANT: &str = "provider";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub customer_number: Option<String>,
    pub is_provider: bool,
    pub created_at: i64,
}

fn from_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: r.text(0)?,
        name: r.text(1)?,
        customer_number: r.opt_text(2)?,
        is_provider: r.bool(3)?,
        created_at: r.i64(4)?,
    })
}

const COLUMNS: &str = "id, name, customer_number, is_provider, created_at";

/// Creates the provider's own tenant on first start.
pub(crate) fn ensure_provider(core: &Steward) -> Result<()> {
    core.db.write(|c: &mut dyn steward_store::Conn| {
        c.execute(
            "INSERT INTO tenants (id, name, customer_number, is_provider, created_at) \
             VALUES ($1, $2, NULL, 1, $3) ON CONFLICT (id) DO NOTHING",
            params![PROVIDER_TENANT, "Provider", crate::clock::now()],
        )
    })?;
    Ok(())
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid(
            "name",
            "a tenant name has 1 to 200 characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_customer_number(n: Option<&str>) -> Result<Option<String>> {
    match n.map(str::trim) {
        None => Ok(None),
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c)) =>
        {
            Ok(Some(n.to_owned()))
        }
        Some(_) => Err(Error::invalid(
            "customer_number",
            "a customer number has 1 to 64 letters, digits or - _ / .",
        )),
    }
}

pub fn create(
    core: &Steward,
    actor: &Actor,
    name: &str,
    customer_number: Option<&str>,
) -> Result<Tenant> {
    actor.require_provider_staff("create tenants")?;
    let name = check_name(name)?;
    let customer_number = check_customer_number(customer_number)?;
    let id = uuid::Uuid::now_v7().to_string();
    core.write(actor, |tx| {
        let n = tx.conn.execute(
            "INSERT INTO tenants (id, name, customer_number, is_provider, created_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (customer_number) DO NOTHING",
            params![
                id.as_str(),
                name.as_str(),
                customer_number.as_deref(),
                tx.at
            ],
        )?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "customer number {} is already used by another tenant",
                customer_number.as_deref().unwrap_or("")
            )));
        }
        tx.audit(Event {
            tenant_id: Some(id.clone()),
            action: "tenant.create".into(),
            ..Event::default()
        })?;
        Ok(Tenant {
            id: id.clone(),
            name: name.clone(),
            customer_number: customer_number.clone(),
            is_provider: false,
            created_at: tx.at,
        })
    })
}

/// A tenant the actor may see.
pub fn get(core: &Steward, actor: &Actor, id: &str) -> Result<Tenant> {
    actor.require_tenant(id, "tenant")?;
    let row = core.db.read(|c| {
        c.query_opt(
            &format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"),
            params![id],
        )
    })?;
    from_row(&row.ok_or_else(|| Error::NotFound("tenant".into()))?)
}

/// The tenants the actor may see: all for provider staff, their own otherwise.
pub fn list(core: &Steward, actor: &Actor) -> Result<Vec<Tenant>> {
    let rows = core.db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM tenants ORDER BY created_at, id"),
            &[],
        )
    })?;
    rows.iter()
        .map(from_row)
        .filter(|t| t.as_ref().map_or(true, |t| actor.sees_tenant(&t.id)))
        .collect()
}

/// What a per-tenant lock serialises (the namespace of its advisory lock key).
#[derive(Debug, Clone, Copy)]
pub(crate) enum TenantLock {
    /// Call record writes: the question "which ids are stored" and the COPY.
    CallRecords,
    /// Direct-conversation creation: one conversation per pair.
    DirectChats,
    /// Extensions: one user per extension.
    Extensions,
}

impl TenantLock {
    /// The advisory lock key: the namespace in the high 32 bits, a hash (FNV-1a)
    /// of the tenant id in the low ones.
    pub(crate) fn key(self, tenant_id: &str) -> i64 {
        let namespace: &[u8; 4] = match self {
            TenantLock::CallRecords => b"\0CDR",
            TenantLock::DirectChats => b"CHAT",
            TenantLock::Extensions => b"EXTN",
        };
        let mut h: u32 = 0x811C_9DC5;
        for b in tenant_id.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        (i64::from(u32::from_be_bytes(*namespace)) << 32) | i64::from(h)
    }
}

/// Takes a per-tenant lock until the transaction ends, so that a check and the
/// write it allows do not interleave with another transaction's of the same
/// kind in the same tenant. PostgreSQL: a transaction-scoped advisory lock;
/// SQLite has one writer, so nothing to take.
pub(crate) fn lock(
    conn: &mut dyn steward_store::Conn,
    kind: TenantLock,
    tenant_id: &str,
) -> Result<()> {
    if conn.backend() == steward_store::Backend::Postgres {
        conn.execute(
            "SELECT pg_advisory_xact_lock($1)",
            params![kind.key(tenant_id)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TenantLock;

    #[test]
    fn lock_keys_keep_their_namespaces_apart_and_their_values_across_versions() {
        let t = "01a23cbc-07da-72d1-8151-720cb0f39f08";
        let keys = [
            TenantLock::CallRecords.key(t),
            TenantLock::DirectChats.key(t),
            TenantLock::Extensions.key(t),
        ];
        // The low 32 bits are the tenant's, the high ones the kind's.
        assert!(
            keys.iter()
                .all(|k| k & 0xFFFF_FFFF == keys[0] & 0xFFFF_FFFF)
        );
        assert_eq!(
            keys.map(|k| k >> 32),
            [0x0043_4452, 0x4348_4154, 0x4558_544E]
        );
        assert_ne!(TenantLock::CallRecords.key("other"), keys[0]);
        // The key servers of the previous version took for this tenant (FNV-1a
        // of the id, worked out apart), so a rolling upgrade keeps serialising
        // with them.
        assert_eq!(keys[0], 0x0043_4452_D465_7319);
    }
}
