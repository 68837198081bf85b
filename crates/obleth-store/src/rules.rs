//! Validation and patch application shared by every store implementation, so that
//! SQLite and Postgres accept and reject exactly the same input.

use obleth_core::{Model, Tenant, model::validate_model_name, now_millis, tenant::validate_name};
use secrecy::ExposeSecret;

use crate::{ModelPatch, NewModel, NewTenant, Result, TenantPatch, invalid};

pub(crate) mod mcp;

/// Largest accepted tenant weight: keeps weighted arithmetic far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Largest accepted `quota.tool_calls_per_minute`: ~16,700 calls a second, more than a
/// pod forwards; a larger number is a typo, not a limit.
pub const MAX_TOOL_CALLS_PER_MINUTE: u64 = 1_000_000;
/// Largest accepted `quota.tool_calls_in_flight`, for the same reason.
pub const MAX_TOOL_CALLS_IN_FLIGHT: u32 = 100_000;

pub(crate) fn new_tenant(new: NewTenant) -> Result<Tenant> {
    let now = now_millis();
    let tenant = Tenant {
        id: obleth_core::new_id(obleth_core::tenant::TENANT_ID_PREFIX),
        name: new.name,
        weight: new.weight,
        group: new.group,
        allowed_models: new.allowed_models,
        disabled: new.disabled,
        never_degrade: new.never_degrade,
        quota: new.quota,
        created_at: now,
        updated_at: now,
    };
    check_tenant(&tenant)?;
    Ok(tenant)
}

pub(crate) fn patch_tenant(mut t: Tenant, p: TenantPatch) -> Result<Tenant> {
    if let Some(v) = p.name {
        t.name = v;
    }
    if let Some(v) = p.weight {
        t.weight = v;
    }
    if let Some(v) = p.group {
        t.group = v;
    }
    if let Some(v) = p.allowed_models {
        t.allowed_models = v;
    }
    if let Some(v) = p.disabled {
        t.disabled = v;
    }
    if let Some(v) = p.never_degrade {
        t.never_degrade = v;
    }
    if let Some(v) = p.quota {
        t.quota = v;
    }
    t.updated_at = now_millis().max(t.updated_at);
    check_tenant(&t)?;
    Ok(t)
}

fn check_tenant(t: &Tenant) -> Result<()> {
    validate_name(&t.name).map_err(|m| invalid("name", m))?;
    validate_name(&t.group).map_err(|m| invalid("group", m))?;
    if t.weight == 0 || t.weight > MAX_WEIGHT {
        return Err(invalid("weight", format!("must be between 1 and {MAX_WEIGHT}")));
    }
    for m in &t.allowed_models {
        validate_model_name(m).map_err(|e| invalid("allowed_models", format!("'{m}': {e}")))?;
    }
    let q = &t.quota;
    for (field, v) in [("quota.monthly_budget", q.monthly_budget), ("quota.lifetime_budget", q.lifetime_budget)] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(invalid(field, "must be a non-negative number"));
        }
    }
    // Stored as signed 64-bit integers (SQLite and Postgres have no unsigned type).
    for (field, v) in [("quota.tpm", q.tpm), ("quota.rpm", q.rpm)] {
        if v.is_some_and(|v| v > i64::MAX as u64) {
            return Err(invalid(field, format!("must be at most {} (omit it for no limit)", i64::MAX)));
        }
    }
    if q.max_in_flight == Some(0) {
        return Err(invalid("quota.max_in_flight", "must be at least 1 (omit it for no limit)"));
    }
    if q.tool_calls_per_minute.is_some_and(|v| v == 0 || v > MAX_TOOL_CALLS_PER_MINUTE) {
        let message = format!("must be between 1 and {MAX_TOOL_CALLS_PER_MINUTE} (omit it for no limit)");
        return Err(invalid("quota.tool_calls_per_minute", message));
    }
    if q.tool_calls_in_flight.is_some_and(|v| v == 0 || v > MAX_TOOL_CALLS_IN_FLIGHT) {
        let message = format!("must be between 1 and {MAX_TOOL_CALLS_IN_FLIGHT} (omit it for no limit)");
        return Err(invalid("quota.tool_calls_in_flight", message));
    }
    Ok(())
}

pub(crate) fn new_model(new: NewModel) -> Result<Model> {
    let now = now_millis();
    let model = Model {
        upstream_model: new.upstream_model.unwrap_or_else(|| new.model_name.clone()),
        model_name: new.model_name,
        api_base: new.api_base,
        api_key: new.api_key,
        input_cost_per_token: new.input_cost_per_token,
        output_cost_per_token: new.output_cost_per_token,
        context_window: new.context_window,
        enabled: new.enabled,
        admission_weight: new.admission_weight,
        max_in_flight: new.max_in_flight,
        tags: new.tags,
        created_at: now,
        updated_at: now,
    };
    let mut model = model;
    check_model(&mut model)?;
    Ok(model)
}

pub(crate) fn patch_model(mut m: Model, p: ModelPatch) -> Result<Model> {
    if let Some(v) = p.upstream_model {
        m.upstream_model = v;
    }
    if let Some(v) = p.api_base {
        m.api_base = v;
    }
    if let Some(v) = p.api_key {
        m.api_key = v;
    }
    if let Some(v) = p.input_cost_per_token {
        m.input_cost_per_token = v;
    }
    if let Some(v) = p.output_cost_per_token {
        m.output_cost_per_token = v;
    }
    if let Some(v) = p.context_window {
        m.context_window = v;
    }
    if let Some(v) = p.enabled {
        m.enabled = v;
    }
    if let Some(v) = p.admission_weight {
        m.admission_weight = v;
    }
    if let Some(v) = p.max_in_flight {
        m.max_in_flight = v;
    }
    if let Some(v) = p.tags {
        m.tags = v;
    }
    m.updated_at = now_millis().max(m.updated_at);
    check_model(&mut m)?;
    Ok(m)
}

/// Tags a model may carry.
pub const MAX_TAGS: usize = 32;

/// A tag: 1–64 characters of `[a-z0-9._:/-]`, starting with a letter or digit.
pub fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let ok = (1..=64).contains(&tag.len())
        && tag.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._:/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 64 characters of a-z, 0-9 and . _ : / -, starting with a letter or digit".into())
    }
}

/// Checks a model and normalises its `api_base` in place (every store writes the
/// normalised form: lowercase scheme and host, canonical IPv4, no trailing slash).
fn check_model(m: &mut Model) -> Result<()> {
    validate_model_name(&m.model_name).map_err(|e| invalid("model_name", e))?;
    validate_model_name(&m.upstream_model).map_err(|e| invalid("upstream_model", e))?;
    if let Some(base) = &m.api_base {
        // Whether the destination is allowed is the gateway's policy (`UpstreamPolicy`,
        // checked by the admin API and at connect); the store only keeps URLs well-formed.
        let parsed = obleth_core::upstream::ApiBase::parse(base).map_err(|e| invalid("api_base", e))?;
        m.api_base = Some(parsed.as_str().to_owned());
    }
    if m.api_key.as_ref().is_some_and(|k| k.expose_secret().is_empty()) {
        return Err(invalid("api_key", "must not be empty (use null to clear it)"));
    }
    for (field, v) in
        [("input_cost_per_token", m.input_cost_per_token), ("output_cost_per_token", m.output_cost_per_token)]
    {
        if !v.is_finite() || !(0.0..=obleth_core::MAX_COST_PER_TOKEN).contains(&v) {
            return Err(invalid(
                field,
                format!("must be a price per token from 0 to {}", obleth_core::MAX_COST_PER_TOKEN),
            ));
        }
    }
    if !m.admission_weight.is_finite() || m.admission_weight <= 0.0 || m.admission_weight > 1000.0 {
        return Err(invalid("admission_weight", "must be greater than 0 and at most 1000"));
    }
    if m.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    for (i, tag) in m.tags.iter().enumerate() {
        validate_tag(tag).map_err(|e| invalid("tags", format!("'{tag}': {e}")))?;
        if m.tags[..i].contains(tag) {
            return Err(invalid("tags", format!("'{tag}' is given twice")));
        }
    }
    if m.max_in_flight == Some(0) {
        return Err(invalid("max_in_flight", "must be at least 1 (or null for no model cap)"));
    }
    if m.context_window == Some(0) {
        return Err(invalid("context_window", "must be positive (or null)"));
    }
    Ok(())
}

/// Largest `reserved_slots`/`max_slots` of a group (fits every backend's integer column).
pub const MAX_GROUP_SLOTS: u32 = 1_000_000;

pub(crate) fn check_group(name: &str, g: &crate::GroupSettings) -> Result<()> {
    validate_name(name).map_err(|m| invalid("name", m))?;
    if g.weight == 0 || g.weight > MAX_WEIGHT {
        return Err(invalid("weight", format!("must be between 1 and {MAX_WEIGHT}")));
    }
    for (field, value) in [("reserved_slots", g.reserved_slots), ("max_slots", g.max_slots)] {
        if value.is_some_and(|v| v == 0 || v > MAX_GROUP_SLOTS) {
            return Err(invalid(field, format!("must be between 1 and {MAX_GROUP_SLOTS} (or null for none)")));
        }
    }
    if let (Some(reserved), Some(max)) = (g.reserved_slots, g.max_slots)
        && reserved > max
    {
        return Err(invalid("reserved_slots", format!("must not exceed max_slots ({reserved} > {max})")));
    }
    Ok(())
}

// === pages ===

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    Bool(bool),
}

pub(crate) fn check_page(page: &crate::PageRequest) -> Result<()> {
    if page.limit == 0 || page.limit > crate::MAX_PAGE_LIMIT {
        return Err(invalid("limit", format!("must be between 1 and {}", crate::MAX_PAGE_LIMIT)));
    }
    Ok(())
}

/// Cursors are `<listing tag>:<sort key>` in hex: opaque to clients, and a cursor of one
/// listing is refused by another.
fn encode_cursor(tag: &str, key: &str) -> String {
    use std::fmt::Write;
    format!("{tag}:{key}").bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn decode_cursor(tag: &str, cursor: &str) -> Result<String> {
    let bad = || invalid("cursor", "is not a cursor of this listing (pass next_cursor as returned)");
    if !cursor.len().is_multiple_of(2) || cursor.len() > 2048 {
        return Err(bad());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| cursor.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(tag).and_then(|r| r.strip_prefix(':')).map(str::to_owned).ok_or_else(bad)
}

pub(crate) const TENANT_CURSOR: &str = "t";
pub(crate) const MODEL_CURSOR: &str = "m";
const KEY_CURSOR: &str = "k";
const AUDIT_CURSOR: &str = "a";

/// The name after which a page of a by-name listing starts.
pub(crate) fn name_after(tag: &str, page: &crate::PageRequest) -> Result<Option<String>> {
    check_page(page)?;
    page.cursor.as_deref().map(|c| decode_cursor(tag, c)).transpose()
}

pub(crate) fn name_cursor(tag: &str, name: &str) -> String {
    encode_cursor(tag, name)
}

/// The (created_at, id) after which a page of keys starts.
pub(crate) fn key_after(page: &crate::PageRequest) -> Result<Option<(i64, String)>> {
    check_page(page)?;
    let Some(c) = page.cursor.as_deref() else { return Ok(None) };
    let key = decode_cursor(KEY_CURSOR, c)?;
    key.split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .map(Some)
        .ok_or_else(|| invalid("cursor", "is not a cursor of this listing (pass next_cursor as returned)"))
}

pub(crate) fn key_cursor(k: &obleth_core::ApiKey) -> String {
    encode_cursor(KEY_CURSOR, &format!("{}:{}", k.created_at, k.id))
}

/// The audit id below which a page of the trail starts (newest first).
pub(crate) fn audit_before(page: &crate::PageRequest) -> Result<Option<i64>> {
    check_page(page)?;
    let Some(c) = page.cursor.as_deref() else { return Ok(None) };
    decode_cursor(AUDIT_CURSOR, c)?
        .parse()
        .map(Some)
        .map_err(|_| invalid("cursor", "is not a cursor of this listing (pass next_cursor as returned)"))
}

pub(crate) fn audit_cursor(e: &crate::AuditEntry) -> String {
    encode_cursor(AUDIT_CURSOR, &e.id.to_string())
}

/// Turns `limit + 1` fetched rows into a page: the extra row only says that more follow.
pub(crate) fn finish_page<T>(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> crate::Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(cursor_of) } else { None };
    crate::Page { items: rows, next_cursor }
}

// === rotation ===

const ROTATED_SUFFIX: &str = " (rotated)";

pub(crate) fn check_rotation(r: &crate::KeyRotation) -> Result<()> {
    if r.overlap_ms < 0 {
        return Err(invalid("overlap_secs", "must not be negative"));
    }
    Ok(())
}

/// The old key's expiry after a rotation: `now + overlap`, never later than before.
/// A revoked key cannot be rotated.
pub(crate) fn rotated_expiry(old: &obleth_core::ApiKey, r: &crate::KeyRotation) -> Result<i64> {
    if old.revoked_at.is_some() {
        return Err(crate::StoreError::Conflict(format!("key '{}' is revoked and cannot be rotated", old.id)));
    }
    let end = r.now.saturating_add(r.overlap_ms);
    Ok(old.expires_at.map_or(end, |e| e.min(end)))
}

/// The new key of a rotation of `old`.
pub(crate) fn rotated_key(old: &obleth_core::ApiKey, r: &crate::KeyRotation) -> obleth_core::ApiKey {
    let name = r.new_name.clone().unwrap_or_else(|| {
        let base = old.name.as_deref().unwrap_or("").trim_end_matches(ROTATED_SUFFIX);
        let base: String = base.chars().take(128 - ROTATED_SUFFIX.len()).collect();
        format!("{base}{ROTATED_SUFFIX}").trim_start().to_owned()
    });
    obleth_core::ApiKey {
        id: r.new_id.clone(),
        tenant_id: old.tenant_id.clone(),
        name: Some(name),
        prefix: r.new_prefix.clone(),
        created_at: r.now,
        expires_at: r.new_expires_at,
        revoked_at: None,
    }
}

// === audit ===

/// Checks who an admin change is attributed to: 1–128 characters of ASCII letters,
/// digits and `. _ - @ : / +` (a user, an e-mail, a service account).
pub fn validate_actor(actor: &str) -> std::result::Result<(), String> {
    if actor.is_empty() || actor.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !actor.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@:/+".contains(&b)) {
        return Err("may contain only ASCII letters, digits and . _ - @ : / +".into());
    }
    Ok(())
}

pub(crate) fn check_audit(e: &crate::NewAuditEntry) -> Result<()> {
    validate_actor(&e.actor).map_err(|m| invalid("actor", m))?;
    for (field, v) in [("action", &e.action), ("resource_kind", &e.resource_kind), ("resource_id", &e.resource_id)] {
        if v.is_empty() || v.len() > 256 || v.contains('\0') {
            return Err(invalid(field, "must be 1 to 256 characters without NUL"));
        }
    }
    Ok(())
}
