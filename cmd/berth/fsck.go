package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func fsckCmd() *cobra.Command {
	o := &adminOpts{}
	var repair bool
	cmd := &cobra.Command{
		Use:   "fsck [--repair]",
		Short: "Check that the blob store and the metadata agree (admins)",
		Long: `Ask the berth server to compare its blob store (files or S3) with its
metadata, while it keeps serving:

  orphans   blobs stored but not recorded (a crash between storing and
            recording leaves them): space nothing frees; counted once
            older than the server's gc_grace, younger ones may be uploads
            committing right now
  missing   blobs recorded but not stored: pulls of them fail; restore
            the content or push it again
  size      blobs whose stored size differs from the recorded one

--repair removes the orphans (each under its digest lock, after checking
again that nothing recorded it meanwhile). Missing blobs are only
reported. The command exits 1 when anything wrong remains.` + adminHelp,
		Example: "  berth fsck\n  berth fsck --repair -o json",
		Args:    cobra.NoArgs,
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.connect()
		if err != nil {
			return err
		}
		r, raw, err := c.Fsck(cmd.Context(), repair)
		if err != nil {
			return err
		}
		if *output == "json" {
			if err := printJSON(cmd.OutOrStdout(), raw); err != nil {
				return err
			}
		} else {
			printFsck(cmd.OutOrStdout(), &r)
		}
		if len(r.Orphans) > len(r.Removed) || len(r.Strays) > len(r.RemovedStrays) || len(r.Missing) > 0 || len(r.SizeMismatch) > 0 {
			return errFsckFound
		}
		return nil
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "remove the orphaned blobs and stray objects")
	o.register(cmd.Flags())
	return cmd
}

// errFsckFound makes berth fsck exit 1 when something is still wrong.
var errFsckFound = errors.New("the blob store and the metadata disagree (see above; --repair removes orphans)")

func printFsck(w io.Writer, r *adminclient.FsckReport) {
	fmt.Fprintf(w, "%d blobs stored, %d recorded\n", r.Stored, r.Recorded)
	for _, b := range r.Orphans {
		fmt.Fprintf(w, "orphan   %s  %d bytes\n", b.Digest, b.Size)
	}
	for _, st := range r.Strays {
		fmt.Fprintf(w, "stray    %s  %d bytes, no blob's object\n", st.Key, st.Size)
	}
	for _, b := range r.Missing {
		fmt.Fprintf(w, "missing  %s  %d bytes recorded\n", b.Digest, b.Size)
	}
	for _, b := range r.SizeMismatch {
		fmt.Fprintf(w, "size     %s  %d bytes stored, another size recorded\n", b.Digest, b.Size)
	}
	if r.Young > 0 {
		fmt.Fprintf(w, "%d unrecorded blobs younger than gc_grace left alone (uploads may be committing)\n", r.Young)
	}
	if len(r.Removed)+len(r.RemovedStrays) > 0 {
		fmt.Fprintf(w, "removed %d orphans and %d stray objects, %d bytes\n", len(r.Removed), len(r.RemovedStrays), r.RemovedBytes)
	}
}
