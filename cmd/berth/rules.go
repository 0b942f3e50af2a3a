package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

// parseSize reads a size: bytes, or a number with KiB, MiB, GiB, TiB (or
// KB, MB, GB, TB, powers of 1000).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	t := strings.TrimSpace(s)
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err != nil || f < 0 {
				break
			}
			return int64(f * float64(u.mult)), nil
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want bytes or a number with KiB, MiB, GiB (e.g. 10GiB); 0 removes the quota", s)
	}
	return n, nil
}

func quotaCmd() *cobra.Command {
	o := &adminOpts{}
	set := &cobra.Command{
		Use:     "set NAMESPACE SIZE",
		Short:   "Set a namespace's storage quota (0 removes it; admins only)",
		Example: "  berth quota set team 50GiB\n  berth quota set team 0",
		Args:    exactArgs(2),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			n, err := parseSize(args[1])
			if err != nil {
				return err
			}
			if err := c.SetQuota(cmd.Context(), args[0], n); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "quota of %s: %d bytes\n", args[0], n)
			return nil
		}),
	}
	show := &cobra.Command{
		Use:   "show NAMESPACE",
		Short: "Show a namespace's usage (each blob counted once) and quota",
		Args:  exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			u, err := c.Usage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			quota := "none"
			if u.Quota > 0 {
				quota = fmt.Sprintf("%d bytes", u.Quota)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d bytes used, quota %s\n", u.Namespace, u.Used, quota)
			return nil
		}),
	}
	return groupCmd("quota", "Storage quotas of namespaces",
		`Set and show namespace quotas. A push that would take a namespace over its
quota is refused (DENIED, naming the quota) before its data is kept.`, o, set, show)
}

func immutableCmd() *cobra.Command {
	o := &adminOpts{}
	var tags string
	add := &cobra.Command{
		Use:     "add REPOSITORIES --tags GLOB",
		Short:   "Make matching tags immutable (admins, or owners of the namespace)",
		Example: "  berth immutable add 'team/*' --tags 'v*'\n  berth immutable add team/app --tags '*'",
		Args:    exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			r, err := c.AddImmutableRule(cmd.Context(), args[0], tags)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rule %d: tags %s of %s are immutable\n", r.ID, r.Tags, r.Repositories)
			return nil
		}),
	}
	add.Flags().StringVar(&tags, "tags", "*", "tag glob, e.g. v* or release-*")
	list := &cobra.Command{
		Use:   "list",
		Short: "List immutable tag rules",
		Args:  cobra.NoArgs,
	}
	output := outputFlag(list)
	list.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		rs, raw, err := c.ImmutableRules(cmd.Context())
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		for _, r := range rs {
			fmt.Fprintf(cmd.OutOrStdout(), "%d\t%s\t%s\n", r.ID, r.Repositories, r.Tags)
		}
		return nil
	})
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove an immutable tag rule (admins only)",
		Args:  exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("rule id %q: want the number berth immutable list shows", args[0])
			}
			return c.DeleteImmutableRule(cmd.Context(), id)
		}),
	}
	return groupCmd("immutable", "Immutable tag rules",
		`Tags matching a rule cannot be moved to another manifest or deleted, except
by an admin.`, o, add, list, remove)
}
