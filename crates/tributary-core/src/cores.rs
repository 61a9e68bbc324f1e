//! How many parts a piece of CPU work is cut into: one per core, but never
//! parts so small that the threads cost more than they save.

/// Parts for `items` when each part should hold at least `min_per_part`:
/// one below twice that, else at most one per core. The cores are asked
/// (which reads the cgroup files) only when more than one part is possible.
pub fn parts(items: usize, min_per_part: usize) -> usize {
    match items / min_per_part.max(1) {
        0 | 1 => 1,
        n => n.min(std::thread::available_parallelism().map_or(1, usize::from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_work_stays_in_one_part() {
        assert_eq!(parts(0, 10), 1);
        assert_eq!(parts(19, 10), 1);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(parts(20, 10), 2.min(cores));
        assert_eq!(parts(1_000_000, 10), cores);
    }
}
