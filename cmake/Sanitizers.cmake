# CRONKEEP_SANITIZE="address;undefined" or "thread" instruments every target.
if(CRONKEEP_SANITIZE)
  string(REPLACE ";" "," _san "${CRONKEEP_SANITIZE}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${_san})
endif()
