//! Screen layout arithmetic, shared by the app (how far a page moves, where the selection may
//! sit) and the renderer (where each part is drawn). It depends on nothing else in the crate.

/// The header: the control-plane line and the breadcrumb (or the disconnected banner).
pub const HEADER: u16 = 2;
/// The footer: key hints, the message line, or the filter/command input.
pub const FOOTER: u16 = 1;

/// Height of the "why" pane for a window height (none on small windows).
pub fn detail_height(h: u16) -> u16 {
    match h {
        h if h >= 30 => 8,
        h if h >= 20 => 6,
        _ => 0,
    }
}

/// Height of the list (or describe text), borders included.
pub fn list_height(h: u16) -> u16 {
    h.saturating_sub(HEADER + FOOTER + detail_height(h))
}

/// How many rows the list shows in a window of this size (borders and column titles take 3).
pub fn list_capacity(_w: u16, h: u16) -> usize {
    list_height(h).saturating_sub(3) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_add_up_to_the_window() {
        for h in [0u16, 1, 5, 19, 20, 29, 30, 80] {
            let used = HEADER.min(h) + list_height(h) + detail_height(h) + FOOTER;
            assert!(used <= h.max(HEADER + FOOTER), "h={h}");
        }
        assert_eq!(list_capacity(120, 40), 40 - 2 - 1 - 8 - 3);
        assert_eq!(list_capacity(20, 2), 0);
    }
}
