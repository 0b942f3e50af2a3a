package metadata

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// NamespaceStat is what a namespace holds, for metrics.
type NamespaceStat struct {
	Namespace string
	// Blobs and BlobBytes count each blob once per namespace, as quotas do.
	Blobs, BlobBytes int64
	// Manifests and ManifestBytes count the manifests of its repositories.
	Manifests, ManifestBytes int64
	// Quota is its quota in bytes (0: none).
	Quota int64
	// Uploads is its open upload sessions.
	Uploads int64
}

// NamespaceStats returns every namespace's holdings, from the metadata
// (a few grouped queries; no blob store access), sorted by name.
func (s *SQL) NamespaceStats(ctx context.Context) ([]NamespaceStat, error) {
	ns := fmt.Sprintf(s.dialect.namespaceOf, "name")
	byName := map[string]*NamespaceStat{}
	stat := func(name string) *NamespaceStat {
		if byName[name] == nil {
			byName[name] = &NamespaceStat{Namespace: name}
		}
		return byName[name]
	}
	queries := []struct {
		q   string
		set func(st *NamespaceStat, a, b int64)
	}{
		{`WITH rn AS (SELECT id, ` + ns + ` AS ns FROM repositories),
			nb AS (SELECT DISTINCT rn.ns, rb.digest FROM repository_blobs rb JOIN rn ON rn.id = rb.repository_id)
			SELECT nb.ns, COUNT(*), COALESCE(SUM(b.size), 0) FROM nb JOIN blobs b ON b.digest = nb.digest GROUP BY nb.ns`,
			func(st *NamespaceStat, a, b int64) { st.Blobs, st.BlobBytes = a, b }},
		{`WITH rn AS (SELECT id, ` + ns + ` AS ns FROM repositories)
			SELECT rn.ns, COUNT(*), COALESCE(SUM(m.size), 0) FROM manifests m JOIN rn ON rn.id = m.repository_id GROUP BY rn.ns`,
			func(st *NamespaceStat, a, b int64) { st.Manifests, st.ManifestBytes = a, b }},
		{`SELECT namespace, bytes, 0 FROM quotas`, func(st *NamespaceStat, a, _ int64) { st.Quota = a }},
		{`SELECT namespace, COUNT(*), 0 FROM uploads WHERE namespace <> '' GROUP BY namespace`,
			func(st *NamespaceStat, a, _ int64) { st.Uploads = a }},
	}
	for _, q := range queries {
		rows, err := s.query(ctx, q.q)
		if err != nil {
			return nil, fmt.Errorf("namespace stats: %w", err)
		}
		for rows.Next() {
			var name string
			var a, b int64
			if err := rows.Scan(&name, &a, &b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("namespace stats: %w", err)
			}
			q.set(stat(name), a, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("namespace stats: %w", err)
		}
	}
	out := make([]NamespaceStat, 0, len(byName))
	for _, st := range byName {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b NamespaceStat) int { return strings.Compare(a.Namespace, b.Namespace) })
	return out, nil
}
