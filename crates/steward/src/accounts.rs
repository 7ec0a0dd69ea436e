//! App accounts and login sessions.
//!
//! Passwords are argon2id hashes. A session token is 256 random bits given to
//! the client once; the database keeps only its SHA-256, so a copy of the
//! database cannot be used to log in. Failed logins slow the account down
//! (1, 2, 4 … 64 s between attempts after the third failure) and then lock it
//! for 15 minutes after the tenth; a success resets the count. Failures are
//! counted per typed username, existing or not (see `login_throttle`).

use serde::Serialize;
use steward_crypto::{IdentifierKind, normalize, password, token};
use steward_store::{Conn, params};
use utoipa::ToSchema;

use crate::access::{Actor, ActorKind, Role};
use crate::audit::Event;
use crate::clock::now;
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::subjects::{self, NewSubject, SubjectKind};
use crate::tenants::PROVIDER_TENANT;

/// Failures before each attempt must wait; and before the account locks.
const SLOW_AFTER: i64 = 3;
const LOCK_AFTER: i64 = 10;
const LOCK_SECS: i64 = 15 * 60;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Account {
    pub id: String,
    pub subject_id: String,
    pub tenant_id: String,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    /// Bearer token: shown once, stored only as a hash.
    pub token: String,
    pub expires_at: i64,
    pub account: Account,
}

/// Creates an app account (and its data subject) in `tenant_id`.
pub fn create_user(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    new: NewUser,
) -> Result<Account> {
    actor.require_tenant(tenant_id, "tenant")?;
    actor.require_role(&[Role::TenantAdmin, Role::Operator], "create users")?;
    // Only the provider's staff create staff accounts; an employer can create its
    // own users and admins but cannot mint provider roles.
    if matches!(new.role, Role::Operator | Role::Dpo) && !actor.provider_staff {
        return Err(Error::Forbidden(format!(
            "only the provider's staff may create {} accounts",
            new.role.as_str()
        )));
    }
    let username = normalize::username(&new.username)
        .map_err(|e| Error::invalid("username", e.to_string()))?;
    password::check_strength(&new.password).map_err(|m| Error::invalid("password", m))?;
    let normalized = subjects::normalize_new(
        core,
        &NewSubject {
            email: new.email.clone(),
            phone: new.phone.clone(),
            name: new.display_name.clone(),
        },
    )?;
    let hash = password::hash(&new.password).map_err(|e| Error::Internal(e.to_string()))?;
    let username_idx = core.keys.blind_index(IdentifierKind::Username, &username);
    let account_id = uuid::Uuid::now_v7().to_string();
    core.write(actor, |tx| {
        let exists = tx
            .conn
            .query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant_id])?;
        if exists.is_none() {
            return Err(Error::NotFound("tenant".into()));
        }
        let taken = tx.conn.query_opt(
            "SELECT id FROM accounts WHERE username_idx = $1",
            params![username_idx.clone()],
        )?;
        if taken.is_some() {
            return Err(Error::Conflict("that username is taken".into()));
        }
        let subject_id = subjects::insert(tx, tenant_id, SubjectKind::User, &normalized)?;
        let key = tx.core.subject_key(&subject_id)?;
        tx.conn.execute(
            "INSERT INTO accounts (id, subject_id, tenant_id, username_idx, username_enc, \
             password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            params![
                account_id.as_str(),
                subject_id.as_str(),
                tenant_id,
                username_idx.clone(),
                fields::seal(&key, "accounts.username", &subject_id, &username)?,
                hash.as_str(),
                new.role.as_str(),
                tx.at
            ],
        )?;
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            subject_id: Some(subject_id.clone()),
            action: "account.create".into(),
            category: Some("account_credentials".into()),
            purpose: Some("provision".into()),
            detail: serde_json::json!({ "account_id": account_id, "role": new.role.as_str() }),
            ..Event::default()
        })?;
        Ok(Account {
            id: account_id.clone(),
            subject_id,
            tenant_id: tenant_id.to_owned(),
            username: username.clone(),
            role: new.role,
            disabled: false,
            created_at: tx.at,
        })
    })
}

const ACCOUNT_COLUMNS: &str = "id, subject_id, tenant_id, username_enc, role, disabled, created_at";

fn account_from(core: &Steward, r: &steward_store::Row) -> Result<Account> {
    let subject_id = r.text(1)?;
    let key = core.subject_key(&subject_id)?;
    Ok(Account {
        id: r.text(0)?,
        username: fields::open(&key, "accounts.username", &subject_id, &r.bytes(3)?)?,
        subject_id,
        tenant_id: r.text(2)?,
        role: Role::parse(&r.text(4)?)?,
        disabled: r.bool(5)?,
        created_at: r.i64(6)?,
    })
}

/// How an account is shown to staff where the audit trail names it by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName {
    pub username: String,
    pub role: Role,
}

/// Usernames and roles of the accounts among `actors` (audit actor strings:
/// `account:<id>`; `cli:` and `system:` actors are skipped), for the staff
/// console's timelines and audit page: one query for all of them, keyed by the
/// actor string. Accounts of tenants the viewer does not see are left out (the
/// page shows their id). Usernames are decrypted, so a lookup that found any
/// writes one `read` entry naming the `view` and the count, as the user list does.
pub fn names(
    core: &Steward,
    actor: &Actor,
    actors: &[&str],
    view: &str,
) -> Result<std::collections::HashMap<String, AccountName>> {
    actor.require_role(&[Role::Operator, Role::Dpo], "see who acted")?;
    let mut ids: Vec<&str> = actors
        .iter()
        .filter_map(|a| a.strip_prefix("account:"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let values: Vec<steward_store::Value> = ids.iter().map(|i| (*i).into()).collect();
    let rows = core.db.read(|c| {
        c.query(
            &format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({})",
                steward_store::placeholders(1, ids.len())
            ),
            &values,
        )
    })?;
    for r in &rows {
        if !actor.sees_tenant(&r.text(2)?) {
            continue;
        }
        // An erased person's account has no key any more: shown by id.
        let subject_id = r.text(1)?;
        let Some(key) = core.keys.subject_key(&subject_id)? else {
            continue;
        };
        out.insert(
            format!("account:{}", r.text(0)?),
            AccountName {
                username: fields::open(&key, "accounts.username", &subject_id, &r.bytes(3)?)?,
                role: Role::parse(&r.text(4)?)?,
            },
        );
    }
    if !out.is_empty() {
        core.write(actor, |tx| {
            tx.audit(Event {
                tenant_id: actor.tenant_id.clone(),
                action: "read".into(),
                category: Some("account_credentials".into()),
                purpose: Some("security".into()),
                detail: serde_json::json!({ "view": view, "accounts": out.len() }),
                ..Event::default()
            })
        })?;
    }
    Ok(out)
}

/// Users of a tenant (tenant-admin of that tenant, provider staff). The listing
/// decrypts usernames, so it is audited (one entry for the tenant).
pub fn list(core: &Steward, actor: &Actor, tenant_id: &str) -> Result<Vec<Account>> {
    actor.require_tenant(tenant_id, "tenant")?;
    actor.require_role(
        &[Role::TenantAdmin, Role::Operator, Role::Dpo],
        "list users",
    )?;
    core.write(actor, |tx| {
        // Provider staff may name any tenant: one that does not exist is 404.
        tx.conn
            .query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant_id])?
            .ok_or_else(|| Error::NotFound("tenant".into()))?;
        let rows = tx.conn.query(
            &format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 ORDER BY created_at, id"
            ),
            params![tenant_id],
        )?;
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            action: "read".into(),
            category: Some("account_credentials".into()),
            purpose: Some("provision".into()),
            detail: serde_json::json!({ "accounts": rows.len() }),
            ..Event::default()
        })?;
        rows.iter().map(|r| account_from(tx.core, r)).collect()
    })
}

/// Checks a username and password and opens a session. `ip` is the client's
/// address, kept (encrypted) with the session as the statement says.
pub fn login(core: &Steward, username: &str, pass: &str, ip: Option<&str>) -> Result<Session> {
    let failed = || Error::LoginFailed("wrong username or password".into());
    // Throttling is keyed by what was typed, account or not, so an attacker learns
    // nothing about which usernames exist from when they get slowed down.
    let typed = normalize::username(username).unwrap_or_else(|_| username.trim().to_lowercase());
    let idx = core.keys.blind_index(IdentifierKind::Username, &typed);
    let t = now();
    let (throttle, row) = core.db.read(|c| {
        let throttle = c.query_opt(
            "SELECT locked_until FROM login_throttle WHERE key_idx = $1",
            params![idx.clone()],
        )?;
        let row = c.query_opt(
            "SELECT id, password_hash, disabled FROM accounts WHERE username_idx = $1",
            params![idx.clone()],
        )?;
        Ok((throttle, row))
    })?;
    if let Some(locked_until) = throttle.map(|r| r.i64(0)).transpose()?
        && locked_until > t
    {
        return Err(Error::Throttled(locked_until - t));
    }
    let verified = match &row {
        Some(r) => password::verify(&r.text(1)?, pass),
        None => {
            // Spend the same time as a real check so usernames cannot be probed.
            password::dummy_verify(pass);
            false
        }
    };
    let Some(row) = row.filter(|_| verified) else {
        record_failure(core, &idx, t)?;
        return Err(failed());
    };
    let account_id = row.text(0)?;
    if row.bool(2)? {
        return Err(Error::LoginFailed("this account is disabled".into()));
    }
    let token = token::new_session_token()?;
    let expires_at = t + core.settings.session_ttl_secs;
    let account_row = core.db.read(|c| {
        c.query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
            params![account_id.as_str()],
        )
    })?;
    let account = account_from(core, &account_row.ok_or_else(failed)?)?;
    let actor = actor_for(&account);
    let key = core.subject_key(&account.subject_id)?;
    core.write(&actor, |tx| {
        tx.conn.execute(
            "DELETE FROM login_throttle WHERE key_idx = $1",
            params![idx.clone()],
        )?;
        tx.conn.execute(
            "INSERT INTO sessions (token_hash, account_id, subject_id, ip_enc, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            params![
                token::hash_token(&token),
                account.id.as_str(),
                account.subject_id.as_str(),
                fields::seal_opt(&key, "sessions.ip", &account.subject_id, ip)?,
                tx.at,
                expires_at
            ],
        )?;
        subjects::touch(tx, &account.subject_id)?;
        tx.audit(Event {
            tenant_id: Some(account.tenant_id.clone()),
            subject_id: Some(account.subject_id.clone()),
            action: "login".into(),
            category: Some("account_credentials".into()),
            purpose: Some("identification".into()),
            ..Event::default()
        })?;
        Ok(())
    })?;
    Ok(Session {
        token,
        expires_at,
        account,
    })
}

/// Counts a failed login for the typed username and sets how long the next
/// attempt must wait. One statement increments, so parallel guesses all count.
fn record_failure(core: &Steward, idx: &[u8], t: i64) -> Result<()> {
    core.db.write(|c: &mut dyn Conn| -> Result<()> {
        let fails = c
            .query_opt(
                "INSERT INTO login_throttle (key_idx, failures, locked_until, updated_at) \
                 VALUES ($1, 1, 0, $2) ON CONFLICT (key_idx) DO UPDATE \
                 SET failures = login_throttle.failures + 1, updated_at = $2 RETURNING failures",
                params![idx.to_vec(), t],
            )?
            .map(|r| r.i64(0))
            .transpose()?
            .unwrap_or(1);
        let wait = if fails >= LOCK_AFTER {
            LOCK_SECS
        } else if fails >= SLOW_AFTER {
            1i64 << (fails - SLOW_AFTER).min(6)
        } else {
            0
        };
        c.execute(
            "UPDATE login_throttle SET locked_until = $1 WHERE key_idx = $2",
            params![if wait > 0 { t + wait } else { 0 }, idx.to_vec()],
        )?;
        // Forget counters nobody has touched for a day.
        c.execute(
            "DELETE FROM login_throttle WHERE updated_at < $1",
            params![t - 86_400],
        )?;
        Ok(())
    })
}

pub fn actor_for(account: &Account) -> Actor {
    Actor {
        audit_id: format!("account:{}", account.id),
        kind: ActorKind::Account(account.role),
        account_id: Some(account.id.clone()),
        tenant_id: Some(account.tenant_id.clone()),
        subject_id: Some(account.subject_id.clone()),
        provider_staff: account.tenant_id == PROVIDER_TENANT
            && matches!(account.role, Role::Operator | Role::Dpo),
    }
}

/// The actor behind a bearer token, if the session is live and the account enabled.
pub fn authenticate(core: &Steward, bearer: &str) -> Result<Actor> {
    let t = now();
    let row = core.db.read(|c| {
        c.query_opt(
            "SELECT a.id, a.subject_id, a.tenant_id, a.role FROM sessions s \
             JOIN accounts a ON a.id = s.account_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
             AND a.disabled = 0",
            params![token::hash_token(bearer), t],
        )
    })?;
    let r = row.ok_or(Error::Unauthenticated)?;
    let role = Role::parse(&r.text(3)?)?;
    let tenant_id = r.text(2)?;
    let id = r.text(0)?;
    Ok(Actor {
        audit_id: format!("account:{id}"),
        kind: ActorKind::Account(role),
        account_id: Some(id),
        provider_staff: tenant_id == PROVIDER_TENANT && matches!(role, Role::Operator | Role::Dpo),
        tenant_id: Some(tenant_id),
        subject_id: Some(r.text(1)?),
    })
}

/// Revokes the session behind this token.
pub fn logout(core: &Steward, bearer: &str) -> Result<()> {
    core.db.write(|c: &mut dyn Conn| {
        c.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            params![now(), token::hash_token(bearer)],
        )
    })?;
    Ok(())
}

/// Disables or re-enables an account; disabling revokes its sessions.
pub fn set_disabled(
    core: &Steward,
    actor: &Actor,
    account_id: &str,
    disabled: bool,
) -> Result<Account> {
    actor.require_role(&[Role::TenantAdmin, Role::Operator], "disable users")?;
    core.write(actor, |tx| {
        let row = tx
            .conn
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
                params![account_id],
            )?
            .ok_or_else(|| Error::NotFound("account".into()))?;
        let tenant = row.text(2)?;
        actor.require_tenant(&tenant, "account")?;
        tx.conn.execute(
            "UPDATE accounts SET disabled = $1 WHERE id = $2",
            params![disabled, account_id],
        )?;
        if disabled {
            tx.conn.execute(
                "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
                params![tx.at, account_id],
            )?;
        }
        tx.audit(Event {
            tenant_id: Some(tenant),
            subject_id: Some(row.text(1)?),
            action: if disabled {
                "account.disable"
            } else {
                "account.enable"
            }
            .into(),
            category: Some("account_credentials".into()),
            purpose: Some("security".into()),
            ..Event::default()
        })?;
        let mut account = account_from(tx.core, &row)?;
        account.disabled = disabled;
        Ok(account)
    })
}

/// The caller's own account.
pub fn me(core: &Steward, actor: &Actor) -> Result<Account> {
    let id = actor.account_id.as_deref().ok_or(Error::Unauthenticated)?;
    let row = core.db.read(|c| {
        c.query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
            params![id],
        )
    })?;
    account_from(core, &row.ok_or(Error::Unauthenticated)?)
}

/// Sets a new password for an account (a tenant-admin for its users, an
/// operator in scope) and revokes the account's sessions, so whoever held the
/// old password is logged out. Operator and DPO accounts only by provider staff:
/// an employer must not take over a staff role by resetting its password.
pub fn reset_password(
    core: &Steward,
    actor: &Actor,
    account_id: &str,
    new_password: &str,
) -> Result<Account> {
    actor.require_role(&[Role::TenantAdmin, Role::Operator], "reset passwords")?;
    password::check_strength(new_password).map_err(|m| Error::invalid("password", m))?;
    let row = core
        .db
        .read(|c| {
            c.query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
                params![account_id],
            )
        })?
        .ok_or_else(|| Error::NotFound("account".into()))?;
    actor.require_tenant(&row.text(2)?, "account")?;
    let role = Role::parse(&row.text(4)?)?;
    if matches!(role, Role::Operator | Role::Dpo) && !actor.provider_staff {
        return Err(Error::Forbidden(format!(
            "only the provider's staff may reset the password of {} accounts",
            role.as_str()
        )));
    }
    let hash = password::hash(new_password).map_err(|e| Error::Internal(e.to_string()))?;
    core.write(actor, |tx| {
        tx.conn.execute(
            "UPDATE accounts SET password_hash = $1 WHERE id = $2",
            params![hash.as_str(), account_id],
        )?;
        tx.conn.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
            params![tx.at, account_id],
        )?;
        tx.audit(Event {
            tenant_id: Some(row.text(2)?),
            subject_id: Some(row.text(1)?),
            action: "account.password_reset".into(),
            category: Some("account_credentials".into()),
            purpose: Some("security".into()),
            detail: serde_json::json!({ "account_id": account_id }),
            ..Event::default()
        })?;
        account_from(tx.core, &row)
    })
}
