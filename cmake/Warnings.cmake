# cronkeep_warnings: an interface target carrying the project's warning flags.
add_library(cronkeep_warnings INTERFACE)
target_compile_options(cronkeep_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
if(CRONKEEP_WERROR)
  target_compile_options(cronkeep_warnings INTERFACE -Werror)
endif()
