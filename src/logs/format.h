// logs/format.h: internal to logs/. The on-disk records of the sidecars;
// docs/log-format.md describes them for humans. Little-endian, fixed size.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace cronkeep::logs::format {

// Every sidecar starts with this 16-byte header; the version is the last byte.
inline constexpr char kIdxMagic[16] = {'c', 'r', 'o', 'n', 'k', 'e', 'e', 'p', '-', 'i', 'd', 'x', 0, 0, 0, 1};
inline constexpr char kTidxMagic[16] = {'c', 'r', 'o', 'n', 'k', 'e', 'e', 'p', '-', 't', 'i', 'd', 'x', 0, 0, 1};
inline constexpr size_t kHeaderBytes = 16;

// .idx: a line start. Written for the first line of a file, whenever a line's
// stream differs from the previous line's, and at least every
// kCheckpointLines lines or kCheckpointBytes bytes.
struct IdxRecord {
  uint64_t line;    // global 1-based line number
  uint64_t offset;  // byte offset of the line's first byte in this file
  uint8_t stream;   // 'o', 'e', 'm'
  uint8_t pad[7];
};
static_assert(sizeof(IdxRecord) == 24);

// .tidx: the first line that started in a new second of output.
struct TidxRecord {
  int64_t time_ms;  // UTC ms since epoch when the chunk holding the line arrived
  uint64_t line;
  uint64_t offset;
};
static_assert(sizeof(TidxRecord) == 24);

inline constexpr uint64_t kCheckpointLines = 1024;
inline constexpr uint64_t kCheckpointBytes = 256 * 1024;

// .meta is text, one key=value per line, replaced atomically (write + rename).
struct Meta {
  int64_t first_line = 1;        // global number of the current file's first line
  int64_t prev_first_line = 0;   // of .prev; 0 = no .prev
  int64_t rotations = 0;
  uint64_t bytes_dropped = 0;
  bool finalized = false;
  bool crashed = false;          // finalized at start-up after the writer died
};

inline constexpr const char* kMetaHeader = "cronkeep-log-meta 1";

std::string render(const Meta& m);
// Returns false when the text is not a version-1 meta.
bool parse(const std::string& text, Meta& m);

}  // namespace cronkeep::logs::format
