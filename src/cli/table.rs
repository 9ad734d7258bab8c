//! Tables as fleetctl prints them: Go's tabwriter with minwidth 0, tabwidth 8, padding 1 and
//! tabs as padding. Every cell but a row's last is followed by as many tabs as it takes to
//! reach the column's width, rounded up to a multiple of 8, so the output lines up in a
//! terminal and scripts can still split on tabs.

const TAB_WIDTH: usize = 8;
const PADDING: usize = 1;

/// Lays out `rows` (all of the same length) as fleetctl's tabwriter would.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    // Go's tabwriter sizes the cells that end in a tab; a row's last cell is not one.
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0);
            (widest + PADDING).div_ceil(TAB_WIDTH) * TAB_WIDTH
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if let Some(width) = widths.get(c).filter(|_| c + 1 < row.len()) {
                let gap = width - cell.chars().count();
                out.extend(std::iter::repeat_n('\t', gap.div_ceil(TAB_WIDTH)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(lines: &[&[&str]]) -> Vec<Vec<String>> {
        lines
            .iter()
            .map(|l| l.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn columns_are_padded_with_tabs_to_the_next_tab_stop_after_the_widest_cell() {
        let table = rows(&[
            &["UNIT", "MACHINE", "ACTIVE", "SUB"],
            &["hello.service", "1a2b3c4d.../10.0.0.2", "active", "running"],
            &["x.service", "-", "inactive", "dead"],
        ]);
        // UNIT: widest 13 + 1 -> 16; MACHINE: 20 + 1 -> 24; ACTIVE: 8 + 1 -> 16.
        assert_eq!(
            render(&table),
            "UNIT\t\tMACHINE\t\t\tACTIVE\t\tSUB\n\
             hello.service\t1a2b3c4d.../10.0.0.2\tactive\t\trunning\n\
             x.service\t-\t\t\tinactive\tdead\n"
        );
    }

    #[test]
    fn a_cell_as_wide_as_a_tab_stop_still_gets_one_tab_of_padding() {
        let table = rows(&[&["12345678", "b"], &["1", "b"]]);
        assert_eq!(render(&table), "12345678\tb\n1\t\tb\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let table = rows(&[&["Grüße", "x"], &["1234567", "y"]]);
        assert_eq!(render(&table), "Grüße\tx\n1234567\ty\n");
    }

    #[test]
    fn a_single_column_and_an_empty_table_have_no_padding() {
        assert_eq!(
            render(&rows(&[&["UNIT"], &["a.service"]])),
            "UNIT\na.service\n"
        );
        assert_eq!(render(&[]), "");
    }
}
