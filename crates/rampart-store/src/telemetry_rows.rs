//! Packed telemetry rows: the points of one device that one batch commits close together in
//! time share one `device_telemetry` row, so the database inserts (and indexes) a row per
//! device per commit instead of one per message. Callers never see the packing: they write and
//! read [`TelemetryRow`]s, one per point, each with its own sealed envelope.
//!
//! A row's `ts` and `seq` are those of its first point, `points` says how many it holds. With
//! one point, `sealed` is that point's envelope (every row written before packing existed reads
//! this way). With more, `sealed` is a container: per point, in (ts, seq) order, `ts` (i64) ,
//! `seq` (i64) and the envelope's length (u32), big-endian, then the envelope. The points of a
//! row lie within [`PACK_SPAN_MS`] of its `ts`, which bounds where a query must look.
//!
//! The container is not sealed itself: every point inside stays bound to its tenant, device
//! and time by its own envelope, exactly as a row of its own was.

use crate::{StoreError, StoreResult, TelemetryRow};

/// The points of one row lie in `[ts, ts + PACK_SPAN_MS]` of the row's `ts`.
pub(crate) const PACK_SPAN_MS: i64 = 1_000;
/// At most this many points share a row (keeps rows to a few KiB at common payload sizes).
const MAX_POINTS: usize = 64;
/// A row stops taking points once its container would pass this size (large payloads).
const MAX_PACKED_BYTES: usize = 64 * 1024;
/// ts, seq and length in front of each envelope.
const POINT_HEADER: usize = 8 + 8 + 4;

/// A row as stored: its key, how many points it holds, and `sealed` (see the module docs).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StoredTelemetry<'a> {
    pub tenant: &'a str,
    pub device: &'a str,
    pub ts: i64,
    pub seq: i64,
    pub points: i64,
    pub sealed: std::borrow::Cow<'a, [u8]>,
}

/// Packs `rows` (in any order) into as few stored rows as the span and size limits allow.
pub(crate) fn pack<'a>(rows: &[&'a TelemetryRow]) -> Vec<StoredTelemetry<'a>> {
    let mut sorted = rows.to_vec();
    sorted.sort_unstable_by(|a, b| (&a.tenant, &a.device, a.ts, a.seq).cmp(&(&b.tenant, &b.device, b.ts, b.seq)));
    let mut stored = Vec::new();
    let mut rest = sorted.as_slice();
    while let Some(first) = rest.first() {
        // A repeated (ts, seq) starts a row of its own, so the key conflicts as it always did.
        let mut bytes = POINT_HEADER + first.sealed.len();
        let together = 1 + rest
            .windows(2)
            .take(MAX_POINTS - 1)
            .take_while(|pair| {
                let (previous, row) = (pair[0], pair[1]);
                bytes += POINT_HEADER + row.sealed.len();
                row.tenant == first.tenant
                    && row.device == first.device
                    && row.ts - first.ts <= PACK_SPAN_MS
                    && (previous.ts, previous.seq) != (row.ts, row.seq)
                    && bytes <= MAX_PACKED_BYTES
            })
            .count();
        let (group, tail) = rest.split_at(together);
        stored.push(pack_group(group));
        rest = tail;
    }
    stored
}

fn pack_group<'a>(group: &[&'a TelemetryRow]) -> StoredTelemetry<'a> {
    let first = group[0];
    let sealed = if let [only] = group {
        std::borrow::Cow::Borrowed(only.sealed.as_slice())
    } else {
        let size = group.iter().map(|row| POINT_HEADER + row.sealed.len()).sum();
        let mut container = Vec::with_capacity(size);
        for row in group {
            container.extend_from_slice(&row.ts.to_be_bytes());
            container.extend_from_slice(&row.seq.to_be_bytes());
            // Envelopes are far below 4 GiB (packets are capped at a few hundred KiB).
            container.extend_from_slice(&u32::try_from(row.sealed.len()).unwrap_or(u32::MAX).to_be_bytes());
            container.extend_from_slice(&row.sealed);
        }
        std::borrow::Cow::Owned(container)
    };
    StoredTelemetry {
        tenant: &first.tenant,
        device: &first.device,
        ts: first.ts,
        seq: first.seq,
        points: i64::try_from(group.len()).unwrap_or(i64::MAX),
        sealed,
    }
}

/// The points of one stored row, in (ts, seq) order. The file is untrusted input: a container
/// that does not parse, or whose first point is not the row's key, is [`StoreError::Corrupt`].
pub(crate) fn unpack(
    tenant: &str,
    device: &str,
    ts: i64,
    seq: i64,
    points: i64,
    sealed: Vec<u8>,
) -> StoreResult<Vec<TelemetryRow>> {
    let point =
        |ts, seq, sealed| TelemetryRow { tenant: tenant.to_owned(), device: device.to_owned(), ts, seq, sealed };
    if points == 1 {
        return Ok(vec![point(ts, seq, sealed)]);
    }
    let corrupt = |why: &str| StoreError::Corrupt(format!("telemetry row {device}@{ts}/{seq}: {why}"));
    let expected = usize::try_from(points).ok().filter(|n| (2..=MAX_POINTS).contains(n));
    let expected = expected.ok_or_else(|| corrupt("impossible point count"))?;
    let mut out = Vec::with_capacity(expected);
    let mut rest = sealed.as_slice();
    while !rest.is_empty() {
        let Some((header, tail)) = rest.split_first_chunk::<POINT_HEADER>() else {
            return Err(corrupt("truncated point header"));
        };
        let point_ts = i64::from_be_bytes(header[..8].try_into().unwrap_or_default());
        let point_seq = i64::from_be_bytes(header[8..16].try_into().unwrap_or_default());
        let length = u32::from_be_bytes(header[16..].try_into().unwrap_or_default()) as usize;
        if tail.len() < length {
            return Err(corrupt("truncated envelope"));
        }
        let (envelope, tail) = tail.split_at(length);
        let in_order = out.last().is_none_or(|last: &TelemetryRow| (last.ts, last.seq) < (point_ts, point_seq));
        let in_span = (ts..=ts.saturating_add(PACK_SPAN_MS)).contains(&point_ts);
        if !in_order || !in_span || out.len() == expected {
            return Err(corrupt("points out of order or out of span"));
        }
        out.push(point(point_ts, point_seq, envelope.to_vec()));
        rest = tail;
    }
    match out.first() {
        Some(first) if out.len() == expected && (first.ts, first.seq) == (ts, seq) => Ok(out),
        _ => Err(corrupt("points do not match the row")),
    }
}

/// Reads a stored row's `sealed` column holding `points` points exactly as `list_telemetry`
/// does, and returns how many points it holds (for the fuzz target in `fuzz/`). `Err` is always
/// [`StoreError::Corrupt`].
pub fn check_telemetry_row(ts: i64, seq: i64, points: i64, sealed: &[u8]) -> StoreResult<usize> {
    unpack("fuzz", "fuzz", ts, seq, points, sealed.to_vec()).map(|rows| rows.len())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn row(device: &str, ts: i64, seq: i64) -> TelemetryRow {
        TelemetryRow {
            tenant: "acme".into(),
            device: device.into(),
            ts,
            seq,
            sealed: format!("sealed-{device}-{ts}-{seq}").into_bytes(),
        }
    }

    fn round_trip(rows: &[TelemetryRow]) -> (usize, Vec<TelemetryRow>) {
        let refs: Vec<&TelemetryRow> = rows.iter().collect();
        let stored = pack(&refs);
        let count = stored.len();
        let mut back = Vec::new();
        for s in stored {
            back.extend(unpack(s.tenant, s.device, s.ts, s.seq, s.points, s.sealed.into_owned()).unwrap());
        }
        (count, back)
    }

    #[test]
    fn one_row_per_device_and_span() {
        let rows = vec![
            row("b", 5, 1),
            row("a", 10, 2),
            row("a", 10, 1),
            row("a", 1_010, 9),
            row("a", 1_011, 1), // more than PACK_SPAN_MS after the first point of its row
            row("b", 6, 0),
        ];
        let (count, back) = round_trip(&rows);
        assert_eq!(count, 3, "a@10..1010, a@1011, b@5..6");
        let mut expected = rows.clone();
        expected.sort_by(|x, y| (&x.device, x.ts, x.seq).cmp(&(&y.device, y.ts, y.seq)));
        assert_eq!(back, expected);
    }

    #[test]
    fn a_single_point_is_stored_as_its_envelope() {
        let only = row("a", 7, 3);
        let stored = pack(&[&only]);
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].points, stored[0].sealed.as_ref()), (1, only.sealed.as_slice()));
    }

    #[test]
    fn rows_hold_at_most_max_points() {
        let rows: Vec<TelemetryRow> = (0..150).map(|i| row("a", 100, i)).collect();
        let (count, back) = round_trip(&rows);
        assert_eq!(count, 3);
        assert_eq!(back, rows);
    }

    #[test]
    fn large_points_fill_rows_up_to_max_packed_bytes() {
        let big = |seq| TelemetryRow { sealed: vec![7; 30 * 1024], ..row("a", 100, seq) };
        let rows: Vec<TelemetryRow> = (0..5).map(big).collect();
        let stored = pack(&rows.iter().collect::<Vec<_>>());
        assert_eq!(stored.iter().map(|s| s.points).collect::<Vec<_>>(), [2, 2, 1]);
        assert!(stored.iter().all(|s| s.sealed.len() <= MAX_PACKED_BYTES));
        let (_, back) = round_trip(&rows);
        assert_eq!(back, rows);
    }

    #[test]
    fn a_repeated_key_gets_a_row_of_its_own() {
        let rows = [row("a", 10, 1), row("a", 10, 1), row("a", 11, 1)];
        let stored = pack(&rows.iter().collect::<Vec<_>>());
        assert_eq!(stored.iter().map(|s| (s.ts, s.seq, s.points)).collect::<Vec<_>>(), [(10, 1, 1), (10, 1, 2)]);
    }

    #[test]
    fn tampered_containers_are_corrupt() {
        let rows = [row("a", 10, 1), row("a", 20, 2)];
        let stored = pack(&rows.iter().collect::<Vec<_>>());
        let sealed = stored[0].sealed.to_vec();
        let open = |ts, seq, points, sealed: Vec<u8>| unpack("acme", "a", ts, seq, points, sealed);
        assert!(open(10, 1, 2, sealed.clone()).is_ok());
        assert!(matches!(open(11, 1, 2, sealed.clone()), Err(StoreError::Corrupt(_))), "row moved");
        assert!(matches!(open(10, 1, 3, sealed.clone()), Err(StoreError::Corrupt(_))), "count");
        assert!(matches!(open(10, 1, 0, sealed.clone()), Err(StoreError::Corrupt(_))), "count");
        assert!(matches!(open(10, 1, 2, sealed[..sealed.len() - 1].to_vec()), Err(StoreError::Corrupt(_))));
        let mut swapped = sealed.clone();
        swapped[..8].copy_from_slice(&30_i64.to_be_bytes());
        assert!(matches!(open(10, 1, 2, swapped), Err(StoreError::Corrupt(_))), "order");
    }

    proptest! {
        #[test]
        fn unpack_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), points in -2i64..80) {
            let _ = unpack("acme", "a", 0, 0, points, bytes);
        }

        #[test]
        fn pack_then_unpack_gives_every_point_back(
            points in proptest::collection::btree_set((0u8..3, 0i64..5_000, 0i64..4), 0..200)
        ) {
            let rows: Vec<TelemetryRow> =
                points.iter().map(|(device, ts, seq)| row(&format!("d{device}"), *ts, *seq)).collect();
            let (_, back) = round_trip(&rows);
            let mut expected = rows;
            expected.sort_by(|x, y| (&x.device, x.ts, x.seq).cmp(&(&y.device, y.ts, y.seq)));
            prop_assert_eq!(back, expected);
        }
    }
}
