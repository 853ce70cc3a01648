//! Packed telemetry: several points of a device committed in one batch share a stored row,
//! yet every range, direction, cursor and limit lists exactly what a plain sorted list of the
//! points would (a reference model, fixed cases and proptest-generated ones), and stored rows
//! read back through `check_telemetry_row`.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rampart_store::prelude::*;
use rampart_store::{DeviceDataRow, StoreError};

use crate::support::*;

/// A point: (ts, seq).
type Point = (i64, i64);

/// What listing `points` with these bounds must answer, in order.
fn model(
    points: &[Point],
    from: Option<i64>,
    to: Option<i64>,
    after: Option<Point>,
    descending: bool,
    limit: u32,
) -> Vec<Point> {
    let mut expected: Vec<Point> = points
        .iter()
        .copied()
        .filter(|&(ts, _)| from.is_none_or(|from| ts >= from) && to.is_none_or(|to| ts <= to))
        .filter(|&point| after.is_none_or(|after| if descending { point < after } else { point > after }))
        .collect();
    expected.sort_unstable();
    if descending {
        expected.reverse();
    }
    if limit > 0 {
        expected.truncate(limit as usize);
    }
    expected
}

/// Lists the device's points with these bounds, checking each point's own envelope.
async fn listed(
    store: &dyn Store,
    device: &str,
    from: Option<i64>,
    to: Option<i64>,
    after: Option<Point>,
    descending: bool,
    limit: u32,
) -> Vec<Point> {
    let rows = store.list_telemetry("dp-one", device, &range(from, to, after, descending, limit)).await.expect("list");
    for row in &rows {
        assert_eq!(row.sealed, format!("sealed-{}-{}", row.ts, row.seq).into_bytes(), "each point keeps its envelope");
        assert_eq!((row.tenant.as_str(), row.device.as_str()), ("dp-one", device));
    }
    rows.iter().map(|row| (row.ts, row.seq)).collect()
}

conformance!(packed_pages_list_exactly_what_a_sorted_list_would, |store| {
    create_tenant(&*store, "dp-one").await;
    create_device(&*store, &device("dp-one", "dense", None)).await;
    // A small deterministic generator: the same points on every backend and every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below
    };
    // Rows that span a second, overlap in time, repeat a `ts`, and batches of one (unpacked).
    let mut all: Vec<Point> = Vec::new();
    for batch_index in 0..150 {
        let size = if batch_index % 5 == 0 { 1 } else { 1 + next(if batch_index % 7 == 0 { 150 } else { 12 }) };
        let base = 10_000 + (batch_index as i64) * 300;
        let rows: Vec<DeviceDataRow> = (0..size)
            .map(|_| {
                let (ts, seq) = (base + next(2_500) as i64, next(4) as i64 + 1 + (all.len() as i64) * 10);
                all.push((ts, seq));
                telemetry("dp-one", "dense", ts, seq)
            })
            .collect();
        store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    }
    // Rows that share one `ts`, their points' seqs interleaved: a page may end inside the tie.
    for batch_index in 0..40 {
        let rows: Vec<DeviceDataRow> = (0..3)
            .map(|i| {
                all.push((5_000, batch_index + 40 * i));
                telemetry("dp-one", "dense", 5_000, batch_index + 40 * i)
            })
            .collect();
        store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    }
    let tied = listed(&*store, "dense", None, Some(5_000), None, false, 20).await;
    assert_eq!(tied, (0..20).map(|seq| (5_000, seq)).collect::<Vec<_>>());
    all.sort_unstable();
    let (first, last) = (all[0].0, all[all.len() - 1].0);
    for case in 0..600 {
        let from = (case % 3 != 0).then(|| first - 100 + next((last - first + 200) as u64) as i64);
        let to = (case % 4 != 0).then(|| from.unwrap_or(first) + next(6_000) as i64);
        let descending = case % 2 == 1;
        let limit = [0, 1, 2, 7, 20, 50, 90, 333][case % 8];
        let after = (case % 5 < 2).then(|| all[next(all.len() as u64) as usize]);
        let got = listed(&*store, "dense", from, to, after, descending, limit).await;
        let expected = model(&all, from, to, after, descending, limit);
        assert_eq!(
            got, expected,
            "case {case}: from {from:?} to {to:?} after {after:?} desc {descending} limit {limit}"
        );
    }
    // Walking the pages with the cursor visits every point once, in both directions.
    for descending in [false, true] {
        let (mut walked, mut after) = (Vec::new(), None);
        loop {
            let page = listed(&*store, "dense", None, None, after, descending, 37).await;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            walked.extend(page);
        }
        assert_eq!(walked, model(&all, None, None, None, descending, 0));
    }
    store.delete_tenant("dp-one").await.expect("delete tenant");
    assert!(store.list_telemetry("dp-one", "dense", &everything()).await.expect("list").is_empty());
});

conformance!(the_points_of_one_batch_share_a_stored_row, |store, raw| {
    create_tenant(&*store, "dp-one").await;
    create_device(&*store, &device("dp-one", "dense", None)).await;
    // 30 points 10 ms apart: one row. 70 points 1 ms apart: two rows (at most 64 points each).
    let rows: Vec<DeviceDataRow> = (0..30).map(|i| telemetry("dp-one", "dense", 1_000 + i * 10, 1)).collect();
    store.insert_device_data_batch(&batch(rows)).await.expect("batch of 30");
    let rows: Vec<DeviceDataRow> = (0..70).map(|i| telemetry("dp-one", "dense", 50_000 + i, 1)).collect();
    store.insert_device_data_batch(&batch(rows)).await.expect("batch of 70");
    let stored = raw
        .query("SELECT ts, seq, points, sealed FROM device_telemetry WHERE tenant = 'dp-one' ORDER BY ts, seq")
        .await;
    let shape: Vec<(i64, i64)> = stored.iter().map(|row| (row[0].int(), row[2].int())).collect();
    assert_eq!(shape, [(1_000, 30), (50_000, 64), (50_064, 6)]);
    for row in &stored {
        let (ts, seq, points, sealed) = (row[0].int(), row[1].int(), row[2].int(), row[3].blob());
        let read = rampart_store::check_telemetry_row(ts, seq, points, &sealed);
        assert_eq!(read.expect("a stored row reads back"), points as usize);
        let truncated = rampart_store::check_telemetry_row(ts, seq, points, &sealed[..sealed.len() - 1]);
        assert!(matches!(truncated, Err(StoreError::Corrupt(_))), "a truncated row is corrupt: {truncated:?}");
        let miscounted = rampart_store::check_telemetry_row(ts, seq, points + 1, &sealed);
        assert!(matches!(miscounted, Err(StoreError::Corrupt(_))), "a miscounted row is corrupt: {miscounted:?}");
    }
    assert_eq!(store.list_telemetry("dp-one", "dense", &everything()).await.expect("list").len(), 100);
});

/// A generated query: from, to, the index of the cursor point, descending, limit.
type Query = (Option<i64>, Option<i64>, Option<usize>, bool, u32);

/// One generated case: batches of points, and queries over them.
#[derive(Debug, Clone)]
struct Case {
    batches: Vec<Vec<Point>>,
    queries: Vec<Query>,
}

fn cases() -> impl Strategy<Value = Case> {
    let point = (0i64..4_000, 0i64..6);
    let batches = prop::collection::vec(prop::collection::btree_set(point, 1..40), 1..8);
    let query = (
        prop::option::of(-100i64..4_100),
        prop::option::of(-100i64..4_100),
        prop::option::of(any::<usize>()),
        any::<bool>(),
        prop_oneof![Just(0u32), 1u32..10, 10u32..80],
    );
    (batches, prop::collection::vec(query, 1..12)).prop_map(|(batches, queries)| Case {
        batches: batches.into_iter().map(|points| points.into_iter().collect()).collect(),
        queries,
    })
}

conformance!(generated_batches_list_like_the_model, |store| {
    create_tenant(&*store, "dp-one").await;
    let handle = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&cases(), |case| {
            // A device of its own per case; a point repeated in two batches is one point twice.
            let device_id = format!("gen-{}", counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let store = store.clone();
            handle.block_on(async move {
                create_device(&*store, &device("dp-one", &device_id, None)).await;
                let mut all: Vec<Point> = Vec::new();
                for (index, points) in case.batches.iter().enumerate() {
                    // Distinct seqs across batches keep every (ts, seq) unique.
                    let rows: Vec<DeviceDataRow> = points
                        .iter()
                        .map(|&(ts, seq)| {
                            let seq = seq * 100 + index as i64;
                            all.push((ts, seq));
                            telemetry("dp-one", &device_id, ts, seq)
                        })
                        .collect();
                    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
                }
                all.sort_unstable();
                for &(from, to, after, descending, limit) in &case.queries {
                    let after = after.map(|index| all[index % all.len()]);
                    let got = listed(&*store, &device_id, from, to, after, descending, limit).await;
                    let expected = model(&all, from, to, after, descending, limit);
                    if got != expected {
                        return Err(TestCaseError::fail(format!(
                            "from {from:?} to {to:?} after {after:?} desc {descending} limit {limit}: \
                             got {got:?}, expected {expected:?}"
                        )));
                    }
                }
                Ok(())
            })
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
});
