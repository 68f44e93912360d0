// argv → cli; the daemon is handed in so that cli/ need not know it.
#include "cli/cli.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) { return cronkeep::cli::main(argc, argv, &cronkeep::daemon::run); }
