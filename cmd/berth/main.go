// Command berth is a private container registry and the tools around it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		if err != errPullWouldFail {
			fmt.Fprintln(os.Stderr, "berth:", err)
		}
		os.Exit(1)
	}
}

// rootCmd is the berth command with all its subcommands.
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "berth is a private container registry",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), migrateCmd(), versionCmd(), certCmd(), loginCmd(), logoutCmd(), userCmd(), namespaceCmd(), robotCmd(), keysCmd(), secretCmd(), doctorCmd(), credentialProviderCmd(), gcCmd(), fsckCmd(), quotaCmd(), immutableCmd(), retentionCmd(), webhookCmd(), mirrorCmd(), auditCmd(), groupMapCmd(), tokenCmd())
	root.AddCommand(replicateCmd())
	return root
}
