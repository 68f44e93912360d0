// cli/cli.h: the `cronkeep` command line (CLI11).
//
// Owns: argument parsing, --help texts, and printing results as text or JSON.
// Reading commands (tasks, runs, logs, validate, check) read the
// configuration and the data directory directly; run, purge, compact and
// status go through a running daemon's HTTP API when one holds the data
// directory, and work on it directly (holding its lock) otherwise; `daemon`
// hands over to daemon::run. Must not contain SQL text.
#pragma once

namespace cronkeep::cli {

// Parses argv and runs the command. Returns the process exit code:
// 0 success, 1 failure at run time, 2 bad usage or invalid configuration.
int main(int argc, char** argv);

}  // namespace cronkeep::cli
