package metadata

import "strings"

// dialect holds what differs between the SQL databases the store runs on;
// everything else (schema shape and queries) is shared.
type dialect struct {
	name string
	// blobType is the column type for manifest payloads.
	blobType string
	// idType is the column type of an auto-assigned integer key.
	idType string
	// placeholders rewrites '?' placeholders for the database.
	placeholders func(string) string
}

var sqliteDialect = dialect{
	name:         "sqlite",
	blobType:     "BLOB",
	idType:       "INTEGER PRIMARY KEY",
	placeholders: func(q string) string { return q },
}

// migrations are applied in order; each runs once. Templates: {{ID}}, {{BLOB}}.
var migrations = []string{
	`CREATE TABLE repositories (
		id {{ID}},
		name TEXT NOT NULL UNIQUE,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE blobs (
		digest TEXT PRIMARY KEY,
		size BIGINT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE repository_blobs (
		repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT NOT NULL REFERENCES blobs(digest),
		created_at BIGINT NOT NULL,
		PRIMARY KEY (repository_id, digest)
	);
	CREATE INDEX repository_blobs_digest ON repository_blobs(digest);
	CREATE TABLE manifests (
		repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
		digest TEXT NOT NULL,
		media_type TEXT NOT NULL,
		artifact_type TEXT NOT NULL,
		subject TEXT NOT NULL,
		annotations TEXT NOT NULL,
		size BIGINT NOT NULL,
		payload {{BLOB}} NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (repository_id, digest)
	);
	CREATE INDEX manifests_subject ON manifests(repository_id, subject);
	CREATE TABLE tags (
		repository_id BIGINT NOT NULL,
		name TEXT NOT NULL,
		digest TEXT NOT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (repository_id, name),
		FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
	);
	CREATE INDEX tags_digest ON tags(repository_id, digest);
	CREATE TABLE manifest_blobs (
		repository_id BIGINT NOT NULL,
		manifest_digest TEXT NOT NULL,
		blob_digest TEXT NOT NULL,
		PRIMARY KEY (repository_id, manifest_digest, blob_digest),
		FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
	);
	CREATE INDEX manifest_blobs_blob ON manifest_blobs(blob_digest);
	CREATE TABLE manifest_children (
		repository_id BIGINT NOT NULL,
		manifest_digest TEXT NOT NULL,
		child_digest TEXT NOT NULL,
		PRIMARY KEY (repository_id, manifest_digest, child_digest),
		FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
	);
	CREATE INDEX manifest_children_child ON manifest_children(repository_id, child_digest);
	CREATE TABLE uploads (
		id TEXT PRIMARY KEY,
		repository TEXT NOT NULL,
		started_at BIGINT NOT NULL
	);
	CREATE INDEX uploads_started ON uploads(started_at);`,
	`CREATE TABLE users (
		name TEXT PRIMARY KEY,
		password_hash TEXT NOT NULL,
		admin INTEGER NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE namespaces (
		name TEXT PRIMARY KEY,
		public INTEGER NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE members (
		namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
		username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
		role TEXT NOT NULL,
		PRIMARY KEY (namespace, username)
	);
	CREATE INDEX members_user ON members(username);
	CREATE TABLE robots (
		name TEXT PRIMARY KEY,
		namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
		secret_hash TEXT NOT NULL,
		scopes TEXT NOT NULL,
		actions TEXT NOT NULL,
		expires_at BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		last_used_at BIGINT NOT NULL,
		revoked INTEGER NOT NULL
	);
	CREATE INDEX robots_namespace ON robots(namespace);
	CREATE TABLE refresh_tokens (
		hash TEXT PRIMARY KEY,
		subject TEXT NOT NULL,
		expires_at BIGINT NOT NULL
	);
	CREATE INDEX refresh_tokens_subject ON refresh_tokens(subject);
	ALTER TABLE uploads ADD COLUMN token_id TEXT NOT NULL DEFAULT ''`,
	`CREATE TABLE quotas (
		namespace TEXT PRIMARY KEY,
		bytes BIGINT NOT NULL
	);
	CREATE TABLE immutable_rules (
		id {{ID}},
		repositories TEXT NOT NULL,
		tags TEXT NOT NULL,
		created_at BIGINT NOT NULL
	)`,
	// Garbage collection asks, per repository link, whether any manifest
	// of that repository uses the blob.
	`CREATE INDEX manifest_blobs_repository_blob ON manifest_blobs(repository_id, blob_digest)`,
	// Retention: when a manifest was last pulled (batched, see
	// RecordPulls) and the policies, one per repository pattern.
	`ALTER TABLE manifests ADD COLUMN last_pulled_at BIGINT NOT NULL DEFAULT 0;
	CREATE TABLE retention_policies (
		id {{ID}},
		repositories TEXT NOT NULL UNIQUE,
		keep_last INTEGER NOT NULL,
		keep_tags TEXT NOT NULL,
		untagged_after BIGINT NOT NULL,
		unpulled_for BIGINT NOT NULL,
		created_at BIGINT NOT NULL
	)`,
}

func (d dialect) render(m string) string {
	return strings.NewReplacer("{{ID}}", d.idType, "{{BLOB}}", d.blobType).Replace(m)
}
