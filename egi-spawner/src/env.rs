//! PLACEHOLDER (owned by the pure-core work): `single_user_env`.
