// cli/cli.h: the `cronkeep` command line (CLI11): argv → ops → text or JSON.
//
// Owns: argument parsing, --help texts, and printing ops answers as text or
// (--json) as ops/wire.h's JSON. Every command but `daemon` and `validate`
// goes through ops::open(): a running daemon's API when one holds the data
// directory, the data directory itself otherwise, with the same answers
// either way. Must not know SQL text, the data directory's layout, or the
// daemon (which main.cc hands in).
#pragma once

#include <functional>

#include "config/config.h"

namespace cronkeep::cli {

// `cronkeep daemon`'s own flags.
struct DaemonFlags {
  bool json_log = false;  // --log-format json
};

// What `cronkeep daemon` runs: returns the process exit code.
using DaemonMain = std::function<int(const config::Config&, const DaemonFlags&)>;

// Parses argv and runs the command. Returns the process exit code:
// 0 success, 1 failure at run time, 2 bad usage or invalid configuration.
int main(int argc, char** argv, const DaemonMain& daemon_main);

}  // namespace cronkeep::cli
