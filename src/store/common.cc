// What both backends share besides expiry_sql: status and trigger names, and
// masking a PostgreSQL URL's password for messages. Linked into the binary
// and into the PostgreSQL module (cronkeep-postgres.so), so it holds no state.
#include <iterator>

#include "store/store.h"

namespace cronkeep::store {
namespace {

const char* const kStatusNames[] = {"pending",   "running", "succeeded",    "failed",  "timeout",
                                    "cancelled", "crashed", "log_overflow", "skipped", "missed"};
const char* const kTriggerNames[] = {"schedule", "manual", "retry", "catch_up", "system"};

}  // namespace

const char* to_string(RunStatus s) { return kStatusNames[static_cast<int>(s)]; }
const char* to_string(Trigger t) { return kTriggerNames[static_cast<int>(t)]; }

std::optional<RunStatus> parse_status(std::string_view text) {
  for (int i = 0; i < static_cast<int>(std::size(kStatusNames)); ++i)
    if (text == kStatusNames[i]) return static_cast<RunStatus>(i);
  return std::nullopt;
}

std::optional<Trigger> parse_trigger(std::string_view text) {
  for (int i = 0; i < static_cast<int>(std::size(kTriggerNames)); ++i)
    if (text == kTriggerNames[i]) return static_cast<Trigger>(i);
  return std::nullopt;
}

std::string mask_password(std::string_view url) {
  std::string out(url);
  // URI form: scheme://user:password@host...
  if (const size_t scheme = out.find("://"); scheme != std::string::npos) {
    const size_t at = out.find('@', scheme + 3);
    const size_t colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at)
      out.replace(colon + 1, at - colon - 1, "***");
  }
  // password=... as a key=value pair or a URI query parameter.
  for (size_t pos = out.find("password="); pos != std::string::npos; pos = out.find("password=", pos + 1)) {
    const size_t start = pos + 9;
    size_t end = out.find_first_of(" &", start);
    if (end == std::string::npos) end = out.size();
    out.replace(start, end - start, "***");
  }
  return out;
}

}  // namespace cronkeep::store
