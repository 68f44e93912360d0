# CRONKEEP_SANITIZE="address;undefined" or "thread" instruments every target.
# Sanitizer reports abort the process, so a test that triggers one fails.
if(CRONKEEP_SANITIZE)
  string(REPLACE ";" "," _san "${CRONKEEP_SANITIZE}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_san} -fno-sanitize-recover=all)
endif()
