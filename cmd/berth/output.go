package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// formatsAnnotation is the annotation of an -o/--output flag that lists
// its formats; the tests find every such flag by it.
const formatsAnnotation = "berth_output_formats"

// formatFlag adds -o/--output to cmd, taking one of formats (the first is
// the default), and refuses any other before the command runs. note, when
// set, is added to the flag's help.
func formatFlag(cmd *cobra.Command, note string, formats ...string) *string {
	p := new(string)
	usage := "output format: " + orList(formats)
	if note != "" {
		usage += " (" + note + ")"
	}
	f := cmd.Flags()
	f.StringVarP(p, "output", "o", formats[0], usage)
	_ = f.SetAnnotation("output", formatsAnnotation, formats)
	next := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if err := checkFormat(*p, formats); err != nil {
			return err
		}
		if next != nil {
			return next(c, args)
		}
		return nil
	}
	return p
}

// checkFormat refuses a format not among formats, naming the valid ones.
func checkFormat(format string, formats []string) error {
	if slices.Contains(formats, format) {
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o %s", format, orList(formats))
}

// orList writes "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
