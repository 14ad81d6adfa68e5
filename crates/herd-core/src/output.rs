//! Where a task's stored output stands: the position in its output log that is committed
//! together with the task's last persisted event.

/// A position in a task's output log (head file plus rolling tail segments). Committed in
/// the task's row with its last persisted event seq; the log files may run ahead of it only
/// until they are recovered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputPos {
    /// Data bytes ever appended (stdout + stderr), including ones no longer stored.
    pub total: u64,
    /// Bytes of the head file (framed records).
    pub head_len: u64,
    /// 0 = no tail yet; else index (1, 2, 3, ...) of the current tail segment.
    pub tail_seg: u64,
    /// Bytes of the current tail segment file (its 8-byte header and framed records).
    pub tail_len: u64,
}
