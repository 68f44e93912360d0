// argv → cli; nothing else.
#include "cli/cli.h"

int main(int argc, char** argv) { return cronkeep::cli::main(argc, argv); }
