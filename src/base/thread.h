// base/thread.h: naming a thread and telling the kernel's scheduler how much
// its latency matters. Best effort throughout: a refusal is ignored, and
// nothing here needs a privilege.
#pragma once

namespace cronkeep::thread {

// Names the calling thread (at most 15 characters show in ps and top).
void set_name(const char* name);

// For the threads on a fire's path (the scheduler's loop, the bookkeeper,
// the spawners, the children's loop): asks the fair scheduler for a short
// time slice (EEVDF's custom slice, Linux 6.12 and later). A thread that
// wakes with a short slice gets an early deadline and preempts threads
// running long slices, instead of waiting behind them for a CPU. The
// threads and processes it starts do not inherit it (reset on fork): a
// task's command runs with the default slice. Older kernels accept the
// request and ignore it.
void prefer_short_latency();

// For threads that serve reads to whoever asks (the API's GET workers):
// raises the calling thread's nice value, so that under a flood of requests
// the fire path gets the CPU first. The thread still gets its share when the
// CPU is free.
void yield_to_latency_sensitive();

}  // namespace cronkeep::thread
