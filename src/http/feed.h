// http/feed.h: SSE fan-out. One feed per followed run (and one per kind of
// run-state watch) turns each event into its SSE frame once; every
// follower of that feed gets the same immutable buffer.
//
// A feed's leader is one thread that runs a blocking ops call
// (ops::Ops::follow or ops::Ops::watch) with a sink that publishes frames
// to the feed; it ends when the ops call returns, or at its next flush
// once no follower is left (the ops calls flush at least every 500 ms).
// Followers are the server's stream connections: push() must not block
// (each follower keeps its own bounded queue and drops its oldest frames
// when it falls behind), so a slow follower never slows the leader or the
// other followers. Must not know sockets: the server implements Follower.
//
// Thread-safety: every method of Hub and Feed may be called from any
// thread. Lock order: the hub's mutex, then a feed's, then a follower's.
#pragma once

#include <cstdint>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cronkeep::http {

// One thing a follower receives. `bytes` is shared by every follower.
struct Frame {
  enum class Kind {
    line,   // a log line: `line` is its number (a follower may skip or refill around it)
    note,   // any other frame, written as is (rotated, dropped by the writer, error, a watch state)
    ready,  // the watch is subscribed (a late joiner gets its own)
    done,   // the end: each follower writes its own `done` (its last id) with `text`
    end,    // the leader returned: the follower closes once it has written what came before
  };
  Kind kind = Kind::note;
  int64_t line = 0;
  std::shared_ptr<const std::string> bytes;
  std::string text;  // done: the status
};

class Follower {
 public:
  virtual ~Follower() = default;
  // Takes frames, in order; never blocks (called with the feed's lock held).
  virtual void push(const std::vector<Frame>& frames) = 0;
};

class Feed {
 public:
  // Hands `frames` to every follower. False when no follower is left (or
  // the hub is stopping): the leader should return.
  bool publish(const std::vector<Frame>& frames);
  // False when no follower is left or the hub is stopping.
  bool wanted();

 private:
  friend class Hub;
  std::mutex mu_;
  std::vector<std::shared_ptr<Follower>> followers_;  // guarded by mu_
  bool ready_seen_ = false;                            // guarded by mu_
  bool closed_ = false;                                // guarded by mu_: no follower may join any more
  std::thread leader_;
  std::string key_;
  class Hub* hub_ = nullptr;
};

class Hub {
 public:
  Hub() = default;
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Adds `follower` to the feed named `key`, starting that feed's leader
  // (`leader`, on a thread of its own) when none runs. When the feed already
  // published its ready frame, `late_ready` (if it has bytes) is pushed to
  // this follower first. Returns the feed, for leave(); null when stopping.
  std::shared_ptr<Feed> join(const std::string& key, const std::shared_ptr<Follower>& follower,
                             const std::function<void(Feed&)>& leader, const Frame& late_ready = {});
  // Removes `follower` from `feed` (no frame is pushed to it afterwards).
  void leave(const std::shared_ptr<Feed>& feed, const Follower* follower);
  // Makes every leader return at its next flush and joins their threads.
  void stop();
  // Feeds with a leader running.
  size_t feeds();

 private:
  friend class Feed;
  void retire(const std::shared_ptr<Feed>& feed);
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Feed>> live_;  // guarded by mu_
  std::vector<std::shared_ptr<Feed>> retired_;         // guarded by mu_: leaders that returned, to join
  std::atomic<bool> stopping_{false};
};

}  // namespace cronkeep::http
