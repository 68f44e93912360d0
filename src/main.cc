// argv → cli; the daemon is handed in so that cli/ need not know it.
#include "cli/cli.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace cronkeep;
  return cli::main(argc, argv, [](const config::Config& config, const cli::DaemonFlags& flags) {
    return daemon::run(config, flags.json_log ? daemon::LogFormat::json : daemon::LogFormat::text);
  });
}
