// http/feed.cc: feeds and their leaders (docs/architecture.md, "Threads").
#include "http/feed.h"

#include <algorithm>

#include "base/thread.h"

namespace cronkeep::http {

bool Feed::publish(const std::vector<Frame>& frames) {
  {
    std::lock_guard lock(mu_);
    for (const Frame& frame : frames)
      if (frame.kind == Frame::Kind::ready) ready_seen_ = true;
    for (const auto& f : followers_) f->push(frames);
    if (!followers_.empty() && !hub_->stopping_) return true;
  }
  return wanted();
}

bool Feed::wanted() {
  {
    std::lock_guard lock(mu_);
    if (!followers_.empty() && !hub_->stopping_) return true;
  }
  // Nobody left: close the feed to joiners (a joiner that came meanwhile
  // keeps it going).
  std::lock_guard hub_lock(hub_->mu_);
  std::lock_guard lock(mu_);
  if (!followers_.empty() && !hub_->stopping_) return true;
  closed_ = true;
  if (auto it = hub_->live_.find(key_); it != hub_->live_.end() && it->second.get() == this) hub_->live_.erase(it);
  return false;
}

Hub::~Hub() { stop(); }

std::shared_ptr<Feed> Hub::join(const std::string& key, const std::shared_ptr<Follower>& follower,
                                const std::function<void(Feed&)>& leader, const Frame& late_ready) {
  std::vector<std::shared_ptr<Feed>> done;
  std::shared_ptr<Feed> feed;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return nullptr;
    done.swap(retired_);
    auto it = live_.find(key);
    if (it != live_.end()) {
      std::lock_guard feed_lock(it->second->mu_);
      if (!it->second->closed_) {
        feed = it->second;
        if (feed->ready_seen_ && late_ready.bytes) follower->push({late_ready});
        feed->followers_.push_back(follower);
      }
    }
    if (!feed) {
      feed = std::make_shared<Feed>();
      feed->key_ = key;
      feed->hub_ = this;
      feed->followers_.push_back(follower);
      live_[key] = feed;
      feed->leader_ = std::thread([this, feed, leader] {
        thread::set_name("ck-feed");
        leader(*feed);
        retire(feed);
      });
    }
  }
  for (auto& f : done)
    if (f->leader_.joinable()) f->leader_.join();
  return feed;
}

void Hub::retire(const std::shared_ptr<Feed>& feed) {
  std::lock_guard lock(mu_);
  std::lock_guard feed_lock(feed->mu_);
  feed->closed_ = true;
  if (auto it = live_.find(feed->key_); it != live_.end() && it->second == feed) live_.erase(it);
  Frame end;
  end.kind = Frame::Kind::end;
  for (const auto& f : feed->followers_) f->push({end});
  feed->followers_.clear();
  retired_.push_back(feed);
}

void Hub::leave(const std::shared_ptr<Feed>& feed, const Follower* follower) {
  if (!feed) return;
  std::lock_guard lock(feed->mu_);
  auto& v = feed->followers_;
  v.erase(std::remove_if(v.begin(), v.end(), [&](const auto& f) { return f.get() == follower; }), v.end());
}

void Hub::stop() {
  stopping_ = true;
  std::vector<std::shared_ptr<Feed>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, feed] : live_) all.push_back(feed);
    all.insert(all.end(), retired_.begin(), retired_.end());
    retired_.clear();
  }
  for (auto& f : all)
    if (f->leader_.joinable() && f->leader_.get_id() != std::this_thread::get_id()) f->leader_.join();
  std::lock_guard lock(mu_);
  live_.clear();
  retired_.clear();
}

size_t Hub::feeds() {
  std::lock_guard lock(mu_);
  return live_.size();
}

}  // namespace cronkeep::http
