package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func retentionCmd() *cobra.Command {
	o := &adminOpts{}
	var p adminclient.RetentionPolicy
	var keepTags string
	var dryRun bool
	add := &cobra.Command{
		Use:   "add REPOSITORIES [--keep-last N] [--keep-tags GLOBS] [--untagged-after D] [--unpulled-for D] [--dry-run]",
		Short: "Add a retention policy (admins, or owners of the namespace)",
		Long: `Add a retention policy for REPOSITORIES (team/* for every repository under
team/, or one repository). Garbage collection applies it on each run:

  --keep-last N        keep the newest N tags (by push time) of those that
                       --keep-tags does not keep; older ones are deleted
  --keep-tags GLOBS    comma-separated tag globs that are always kept
  --unpulled-for D     delete tags neither pushed nor pulled for D
  --untagged-after D   keep untagged manifests for D (default: the
                       server's gc_grace), then delete them

Durations read as 30d, 72h or 90m. Immutable tags are never deleted. A
repository follows its most specific policy (team/app over team/*).
--dry-run shows what the policy would delete now and saves nothing.`,
		Example: "  berth retention add 'team/*' --keep-last 10 --keep-tags 'v*,latest' --dry-run\n" +
			"  berth retention add team/ci --unpulled-for 30d --untagged-after 7d",
		Args: exactArgs(1),
	}
	output := outputFlag(add)
	add.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
		p.Repositories = args[0]
		p.KeepTags = splitList(keepTags)
		out := cmd.OutOrStdout()
		if !dryRun {
			saved, err := c.AddRetentionPolicy(cmd.Context(), p)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "policy %d: %s\n", saved.ID, describePolicy(saved))
			return nil
		}
		r, raw, err := c.TryRetentionPolicy(cmd.Context(), p)
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(out, raw)
		}
		printRetentionRun(out, r.Tags, r.Manifests)
		fmt.Fprintf(out, "dry run: %s would delete %d tags and %d manifests now; nothing was saved\n", describePolicy(r.Policy), len(r.Tags), len(r.Manifests))
		return nil
	})
	add.Flags().IntVar(&p.KeepLast, "keep-last", 0, "keep the newest N tags (0: no limit)")
	add.Flags().StringVar(&keepTags, "keep-tags", "", "comma-separated tag globs always kept, e.g. v*,latest")
	add.Flags().StringVar(&p.UnpulledFor, "unpulled-for", "", "delete tags neither pushed nor pulled for this long, e.g. 30d")
	add.Flags().StringVar(&p.UntaggedAfter, "untagged-after", "", "keep untagged manifests this long, e.g. 7d")
	add.Flags().BoolVar(&dryRun, "dry-run", false, "show what the policy would delete now; save nothing")
	list := &cobra.Command{
		Use:   "list",
		Short: "List retention policies",
		Args:  cobra.NoArgs,
	}
	listOutput := outputFlag(list)
	list.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		ps, raw, err := c.RetentionPolicies(cmd.Context())
		if err != nil {
			return err
		}
		if *listOutput == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		for _, p := range ps {
			fmt.Fprintf(cmd.OutOrStdout(), "%d\t%s\n", p.ID, describePolicy(p))
		}
		return nil
	})
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a retention policy (admins, or owners of the namespace)",
		Args:  exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("policy id %q: want the number berth retention list shows", args[0])
			}
			return c.DeleteRetentionPolicy(cmd.Context(), id)
		}),
	}
	return groupCmd("retention", "Retention policies: which tags and untagged manifests to keep",
		`Retention policies say, per repository pattern, which tags to keep; garbage
collection (scheduled, or berth gc) deletes the rest and what they held.`, o, add, list, remove)
}

// describePolicy writes a policy in one line.
func describePolicy(p adminclient.RetentionPolicy) string {
	parts := []string{p.Repositories}
	if p.KeepLast > 0 {
		parts = append(parts, fmt.Sprintf("keep newest %d tags", p.KeepLast))
	}
	if len(p.KeepTags) > 0 {
		parts = append(parts, "always keep "+strings.Join(p.KeepTags, ","))
	}
	if p.UnpulledFor != "" {
		parts = append(parts, "delete tags unpulled for "+p.UnpulledFor)
	}
	if p.UntaggedAfter != "" {
		parts = append(parts, "delete untagged after "+p.UntaggedAfter)
	}
	return strings.Join(parts, "; ")
}

func printRetentionRun(w io.Writer, tags []adminclient.TagDeletion, manifests []adminclient.GCManifest) {
	for _, t := range tags {
		fmt.Fprintf(w, "tag %s:%s (%s; policy %d)\n", t.Repository, t.Tag, t.Reason, t.PolicyID)
	}
	for _, m := range manifests {
		fmt.Fprintf(w, "manifest %s@%s\n", m.Repository, m.Digest)
	}
}
