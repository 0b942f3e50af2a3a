package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// outputOf is a command's own or inherited output flag, or nil.
func outputOf(c *cobra.Command) *pflag.Flag {
	if f := c.Flags().Lookup("output"); f != nil {
		return f
	}
	return c.InheritedFlags().Lookup("output")
}

// outputCommands walks the command tree and returns the path (without
// "berth") of every command that has an output flag.
func outputCommands(c *cobra.Command) [][]string {
	var paths [][]string
	if outputOf(c) != nil {
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
	}
	for _, sub := range c.Commands() {
		paths = append(paths, outputCommands(sub)...)
	}
	return paths
}

// runnableArgs returns the arguments of a run of path that gets past the
// command's argument and required-flag checks: as many placeholder
// arguments as it takes, and a placeholder for each required flag.
func runnableArgs(t *testing.T, root *cobra.Command, path []string) []string {
	t.Helper()
	c, _, err := root.Find(path)
	if err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(path)
	for n := 0; ; n++ {
		if n > 4 {
			t.Fatalf("berth %s: no number of arguments up to 4 passes its argument check", strings.Join(path, " "))
		}
		try := slices.Repeat([]string{"x"}, n)
		if c.Args == nil || c.Args(c, try) == nil {
			args = append(args, try...)
			break
		}
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if req := f.Annotations[cobra.BashCompOneRequiredFlag]; len(req) > 0 && req[0] == "true" {
			args = append(args, "--"+f.Name+"=x")
		}
	})
	return args
}

// TestUnknownOutputFormat runs every command that has -o/--output with
// an unknown format: each must fail before doing anything, with a
// one-line error naming the valid formats.
func TestUnknownOutputFormat(t *testing.T) {
	noCluster(t)
	paths := outputCommands(rootCmd())
	var names []string
	for _, p := range paths {
		names = append(names, strings.Join(p, " "))
	}
	for _, want := range []string{"doctor", "secret create", "user list", "robot create", "gc"} {
		if !slices.Contains(names, want) {
			t.Errorf("the walk of the command tree missed berth %s (found: %s)", want, strings.Join(names, ", "))
		}
	}
	for _, path := range paths {
		name := strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			root := rootCmd()
			args := append(runnableArgs(t, root, path), "-o", "bogus")
			c, _, _ := root.Find(path)
			formats := outputOf(c).Annotations[formatsAnnotation]
			if len(formats) == 0 {
				t.Errorf("berth %s: -o is not made by formatFlag (no %s annotation), so nothing refuses unknown formats", name, formatsAnnotation)
			}
			var out bytes.Buffer
			root.SetArgs(args)
			root.SetOut(&out)
			root.SetErr(&out)
			err := root.Execute()
			if err == nil || errors.Is(err, errPullWouldFail) {
				t.Fatalf("berth %s: error %v, want a message refusing the format; output:\n%s", strings.Join(args, " "), err, out.String())
			}
			msg := err.Error()
			if !strings.Contains(msg, `unknown output format "bogus"`) || strings.Contains(msg, "\n") {
				t.Errorf("berth %s: error %q, want one line saying unknown output format \"bogus\"", strings.Join(args, " "), msg)
			}
			for _, f := range formats {
				if !strings.Contains(msg, f) {
					t.Errorf("berth %s: error %q does not list the format %s", strings.Join(args, " "), msg, f)
				}
			}
		})
	}
}

// TestKnownOutputFormats checks that each command's check passes its own
// formats (a typo in one would refuse it).
func TestKnownOutputFormats(t *testing.T) {
	for _, path := range outputCommands(rootCmd()) {
		c, _, _ := rootCmd().Find(path)
		flag := outputOf(c)
		if c.PreRunE == nil {
			t.Errorf("berth %s: no PreRunE checks -o", strings.Join(path, " "))
			continue
		}
		for _, f := range flag.Annotations[formatsAnnotation] {
			if err := flag.Value.Set(f); err != nil {
				t.Fatal(err)
			}
			if err := c.PreRunE(c, nil); err != nil {
				t.Errorf("berth %s -o %s: %v", strings.Join(path, " "), f, err)
			}
		}
	}
}
