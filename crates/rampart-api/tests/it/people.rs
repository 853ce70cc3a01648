//! People, tenants and RBAC through the API.
