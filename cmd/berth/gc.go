package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func gcCmd() *cobra.Command {
	o := &adminOpts{}
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc [--dry-run]",
		Short: "Collect garbage on the server now, while it keeps serving",
		Long: `Ask the berth server to collect garbage now: first the tags retention
policies delete (berth retention), then manifests no tag (or index, or
subject of a referrer) keeps alive, blob links no manifest uses, and blobs
no repository holds, each only once older than the server's gc_grace. Pushes
and pulls go on meanwhile. --dry-run reports what would be removed and
changes nothing. Admins only.` + adminHelp,
		Example: "  berth gc --dry-run\n  berth gc -o json",
		Args:    cobra.NoArgs,
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.connect()
		if err != nil {
			return err
		}
		r, raw, err := c.CollectGarbage(cmd.Context(), dryRun)
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		verb := "freed"
		if dryRun {
			verb = "would free"
		}
		printRetentionRun(cmd.OutOrStdout(), r.Tags, r.Manifests)
		fmt.Fprintf(cmd.OutOrStdout(), "%s %d bytes: %d blobs, %d manifests, %d unused blob links, %d tags (retention)\n",
			verb, r.Bytes, r.Blobs, len(r.Manifests), r.Unlinked, len(r.Tags))
		return nil
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be removed; change nothing")
	o.register(cmd.Flags())
	return cmd
}
