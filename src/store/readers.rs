//! A few reader threads for the async side's store reads, so that sled never stalls a session
//! task. Not the runtime's blocking pool: a burst of `hello`s there grows hundreds of threads,
//! each with its stack and allocator heap (300 threads and a third of the memory per idle
//! connection, measured), for reads that take microseconds.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Reader threads: enough to overlap the odd read that waits for the disk.
const THREADS: usize = 4;

type Read = Box<dyn FnOnce() + Send>;

pub(super) struct Readers {
    queue: mpsc::Sender<Read>,
}

impl Readers {
    pub(super) fn spawn() -> std::io::Result<Readers> {
        let (queue, reads) = mpsc::channel::<Read>();
        let reads = Arc::new(Mutex::new(reads));
        for n in 0..THREADS {
            let reads = reads.clone();
            std::thread::Builder::new().name(format!("nudge-store-read-{n}")).spawn(move || {
                loop {
                    // The lock is held only to take one read; the queue's end ends the thread.
                    let next = reads.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        // A read that panics answers `Closed` (its reply is dropped); the
                        // thread stays for the next one.
                        Ok(read) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Readers { queue })
    }

    /// Queues `read`; false when the readers are gone.
    pub(super) fn run(&self, read: Read) -> bool {
        self.queue.send(read).is_ok()
    }
}
