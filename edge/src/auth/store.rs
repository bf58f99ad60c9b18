//! Users, API keys and the token signing key, in the profile's SQL
//! database (SQLite embedded, PostgreSQL in the cluster), so every edge
//! replica sees the same ones.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::Context;
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use parking_lot::Mutex;
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};

use admesh_common::{Database, on_pool, time::now_millis};

use super::{API_KEY_PREFIX, Identity, Role};

/// A stored user, without the hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub created_at_ms: i64,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("user {0} already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// How long a checked API key is trusted before it is looked up again (a
/// revoked key stops working within this).
const API_KEY_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct AuthStore {
    database: Database,
    api_keys: Mutex<HashMap<String, (Option<Identity>, Instant)>>,
}

/// A hash nobody's password matches, checked when a username is unknown so
/// that a login takes as long either way.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            Argon2::default()
                .hash_password(
                    random_text(24).as_bytes(),
                    &SaltString::generate(&mut OsRng),
                )
                .map(|hash| hash.to_string())
                .unwrap_or_default()
        })
        .clone()
}

impl AuthStore {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            api_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The HS256 key: the configured one, or one generated once and kept in
    /// SQL so every replica and every restart signs alike.
    pub async fn signing_key(&self, configured: &str) -> anyhow::Result<Vec<u8>> {
        if !configured.is_empty() {
            return Ok(configured.as_bytes().to_vec());
        }
        let generated = random_text(48);
        let (key,): (String,) = on_pool!(&self.database, pool => {
            sqlx::query(
                "INSERT INTO edge_settings (name, value) VALUES ('jwt_signing_key', $1) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&generated)
            .execute(pool)
            .await?;
            sqlx::query_as("SELECT value FROM edge_settings WHERE name = 'jwt_signing_key'")
                .fetch_one(pool)
                .await?
        });
        Ok(key.into_bytes())
    }

    /// Creates the `admin` user when there is none: with `password`, or a
    /// generated one, which is returned so it can be shown once.
    pub async fn ensure_admin(&self, password: &str) -> anyhow::Result<Option<String>> {
        if self.user("admin").await?.is_some() {
            return Ok(None);
        }
        let (password, generated) = if password.is_empty() {
            let generated = random_text(20);
            (generated.clone(), Some(generated))
        } else {
            (password.to_string(), None)
        };
        match self.create_user("admin", &password, Role::Admin).await {
            Ok(_) => Ok(generated),
            // Another replica created it first.
            Err(CreateUserError::AlreadyExists(_)) => Ok(None),
            Err(CreateUserError::Storage(error)) => Err(error),
        }
    }

    async fn user(&self, username: &str) -> anyhow::Result<Option<(UserRecord, String)>> {
        let row: Option<(String, String, String, String, i64)> = on_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT id, username, password_hash, role, created_at FROM users \
                 WHERE username = $1 AND NOT disabled",
            )
            .bind(username)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(|(id, username, hash, role, created_at_ms)| {
            Some((
                UserRecord {
                    id,
                    username,
                    role: Role::parse(&role)?,
                    created_at_ms,
                },
                hash,
            ))
        }))
    }

    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<UserRecord, CreateUserError> {
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))
        })
        .await
        .context("password hashing task")??;
        let record = UserRecord {
            id: admesh_common::ids::new_id(),
            username: username.to_string(),
            role,
            created_at_ms: now_millis(),
        };
        let inserted = on_pool!(&self.database, pool => {
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, role, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&record.id)
            .bind(&record.username)
            .bind(&hash)
            .bind(role.as_str())
            .bind(record.created_at_ms)
            .execute(pool)
            .await
            .context("storing a user")?
            .rows_affected()
        });
        if inserted == 0 {
            return Err(CreateUserError::AlreadyExists(username.to_string()));
        }
        Ok(record)
    }

    /// The user when the password is right.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Option<UserRecord>> {
        let found = self.user(username).await?;
        let hash = found.as_ref().map(|(_, hash)| hash.clone());
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(dummy_hash);
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .context("password check task")?;
        Ok(found.filter(|_| matches).map(|(record, _)| record))
    }

    /// A new API key; only its SHA-256 is stored. Returns (id, key).
    pub async fn create_api_key(&self, name: &str, role: Role) -> anyhow::Result<(String, String)> {
        let id = random_text(12).to_ascii_lowercase();
        let key = format!("{API_KEY_PREFIX}{id}_{}", random_text(32));
        on_pool!(&self.database, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, name, key_hash, role, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(name)
            .bind(key_hash(&key))
            .bind(role.as_str())
            .bind(now_millis())
            .execute(pool)
            .await
            .context("storing an API key")?;
        });
        Ok((id, key))
    }

    /// The identity of a valid, unrevoked API key.
    pub async fn api_key_identity(&self, key: &str) -> anyhow::Result<Option<Identity>> {
        let hash = key_hash(key);
        if let Some((identity, at)) = self.api_keys.lock().get(&hash)
            && at.elapsed() < API_KEY_CACHE_TTL
        {
            return Ok(identity.clone());
        }
        let row: Option<(String, String)> = on_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            )
            .bind(&hash)
            .fetch_optional(pool)
            .await?
        });
        let identity = row.and_then(|(id, role)| {
            Some(Identity {
                subject: format!("key:{id}"),
                role: Role::parse(&role)?,
            })
        });
        let mut cache = self.api_keys.lock();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(hash, (identity.clone(), Instant::now()));
        Ok(identity)
    }
}

fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn random_text(length: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}
