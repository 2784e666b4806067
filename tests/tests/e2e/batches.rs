//! Batch inquiries: a bureau asks about many subjects at once, as JSON or
//! as a CSV file, follows the batch as events, and downloads the results.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn subject_line(case: &str, subject: Value) -> Value {
    json!({"case_number": case, "subject": subject})
}

/// A POST of `body` (`content_type`) with an `Idempotency-Key`.
async fn post_batch(
    sys: &System,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    let response = sys
        .client
        .post(format!("{}/v1/inquiry-batches", sys.base))
        .bearer_auth(ENFORCEMENT)
        .header("idempotency-key", key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply {
        status,
        body,
        headers,
    })
}

/// Reads the batch's event stream to its end (the `completed` event), or
/// fails after `limit`: the events by name, in order.
async fn follow(sys: &System, id: &str, limit: Duration) -> anyhow::Result<Vec<(String, Value)>> {
    let mut response = sys
        .client
        .get(format!("{}/v1/inquiry-batches/{id}/events", sys.base))
        .bearer_auth(ENFORCEMENT)
        .send()
        .await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "{}", response.status());
    anyhow::ensure!(
        response.headers()["content-type"]
            .to_str()?
            .starts_with("text/event-stream")
    );
    let deadline = tokio::time::Instant::now() + limit;
    // Bytes until a whole event is in: a chunk may end inside a character.
    let mut buffer: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .map_err(|_| {
                anyhow::anyhow!("the batch did not complete in {limit:?}: {events:?}")
            })??;
        let Some(chunk) = chunk else { break };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let block = std::str::from_utf8(&block)?;
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !name.is_empty() {
                events.push((name, serde_json::from_str(&data)?));
            }
        }
    }
    anyhow::ensure!(
        events.last().is_some_and(|(name, _)| name == "completed"),
        "the stream ended without `completed`: {events:?}"
    );
    Ok(events)
}

async fn a_bureau_asks_about_several_subjects_at_once_and_follows_them_to_their_results(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = json!({
        "officers": [officer()],
        "asset_kinds": ["bank_account", "real_estate"],
        "subjects": [
            subject_line(CASE, zhang_san()),
            subject_line("(2024)甘0503执1235号", organisation()),
            subject_line("(2024)甘0503执1236号", nobody()),
            subject_line("(2024)甘0503执1237号",
                json!({"kind": "person", "name": "错号", "id_number": "360426199101010072"})),
            subject_line("not a case number", zhang_san()),
            {"case_number": "(2024)甘0503执1238号"},
        ]
    });
    let raw = serde_json::to_vec(&body)?;
    let reply = post_batch(&sys, "batch-1", "application/json", raw.clone()).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let batch = &reply.body;
    let id = batch["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("bat_"), "{batch}");
    assert_eq!(
        (&batch["lines"], &batch["accepted"], &batch["refused"]),
        (&json!(6), &json!(3), &json!(3)),
        "{batch}"
    );
    let refused: BTreeMap<i64, (String, String)> = batch["refused_lines"]
        .as_array()
        .expect("refused lines")
        .iter()
        .map(|l| {
            (
                l["line"].as_i64().unwrap_or_default(),
                (
                    l["code"].as_str().unwrap_or_default().to_owned(),
                    l["field"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(refused.keys().copied().collect::<Vec<_>>(), vec![4, 5, 6]);
    assert_eq!(refused[&4].1, "subject.id_number", "{refused:?}");
    assert_eq!(refused[&5].1, "case_number", "{refused:?}");
    assert_eq!(refused[&6].1, "subject", "{refused:?}");

    // The same key and body: the same batch; another body: a conflict.
    let again = post_batch(&sys, "batch-1", "application/json", raw).await?;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body["id"], json!(id));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = post_batch(
        &sys,
        "batch-1",
        "application/json",
        serde_json::to_vec(
            &json!({"officers": [officer()], "subjects": [subject_line(CASE, nobody())]}),
        )?,
    )
    .await?;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.body);

    // Every line's result arrives once on the stream, then `completed`.
    let events = follow(&sys, &id, Duration::from_secs(30)).await?;
    let mut results: BTreeMap<i64, Value> = BTreeMap::new();
    for (name, data) in &events {
        assert!(
            matches!(name.as_str(), "progress" | "result" | "completed"),
            "{name}"
        );
        if name == "result" {
            let line = data["line"].as_i64().expect("a line");
            assert!(
                results.insert(line, data.clone()).is_none(),
                "line {line} twice"
            );
        }
    }
    assert_eq!(
        results.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let zhang = &results[&1]["inquiry"];
    assert_eq!(zhang["status"], "completed");
    assert_eq!(zhang["case_number"], CASE);
    assert_eq!(assets(zhang, "bank_account").len(), 3, "{zhang}");
    assert_eq!(assets(zhang, "real_estate").len(), 1, "{zhang}");
    assert_eq!(results[&4]["error"]["field"], "subject.id_number");
    let (_, done) = events.last().expect("completed");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["subjects"], json!({"running": 0, "completed": 3}));

    // The counts by agency: each agency asked about the three subjects.
    let read = sys
        .get(&format!("/v1/inquiry-batches/{id}"), ENFORCEMENT)
        .await?;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["status"], "completed");
    let agencies = read.body["agencies"].as_array().expect("agencies");
    let bank_a = agencies
        .iter()
        .find(|a| a["agency"] == "bank-a")
        .expect("bank-a's counts");
    assert_eq!(bank_a["total"], 3, "{bank_a}");
    assert_eq!(
        read.body["progress"]["pending"], 0,
        "{}",
        read.body["progress"]
    );
    // Another caller sees no such batch.
    let foreign = sys
        .get(&format!("/v1/inquiry-batches/{id}"), AUDITOR)
        .await?;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    // The results as NDJSON, every line in order.
    let ndjson = sys
        .client
        .get(format!("{}/v1/inquiry-batches/{id}/results", sys.base))
        .bearer_auth(ENFORCEMENT)
        .send()
        .await?;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let numbers: Vec<i64> = lines.iter().filter_map(|l| l["line"].as_i64()).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(lines[0]["inquiry"]["id"], zhang["id"]);

    // And as CSV: a row per account or unit found.
    let csv = sys
        .client
        .get(format!("{}/v1/inquiry-batches/{id}/results", sys.base))
        .bearer_auth(ENFORCEMENT)
        .header("accept", "text/csv")
        .send()
        .await?
        .text()
        .await?;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers()?.clone();
    assert_eq!(&header[0], "line");
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let found: Vec<&str> = rows
        .iter()
        .filter(|r| &r[0] == "1" && !r[11].is_empty())
        .map(|r| &r[11])
        .collect();
    assert!(found.contains(&"6222020200112233445"), "{csv}");
    assert!(found.contains(&"620503001001GB00001F00010001"), "{csv}");
    assert!(
        rows.iter()
            .any(|r| &r[0] == "4" && r[14].starts_with("invalid_value"))
    );

    // The audit log answers "who asked about 张三" for the batch's subject.
    let asked = sys
        .audit(&format!("subject={ZHANG_SAN_ID}&action=inquiry.create"))
        .await?;
    assert!(
        asked.iter().any(|e| e["inquiry_id"] == zhang["id"]
            && e["status"] == "accepted"
            && e["case_number"] == CASE
            && e["officers"][0]
                .as_str()
                .is_some_and(|o| o.contains("李明"))),
        "{asked:?}"
    );
    let sent = sys
        .audit(&format!(
            "subject={ZHANG_SAN_ID}&agency=bank-a&action=inquiry.send"
        ))
        .await?;
    assert!(
        sent.iter().any(|e| e["inquiry_id"] == zhang["id"]),
        "{sent:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_bureau_asks_about_several_subjects_at_once_on_sqlite() -> anyhow::Result<()> {
    a_bureau_asks_about_several_subjects_at_once_and_follows_them_to_their_results(Backend::Sqlite)
        .await
}

#[tokio::test]
async fn a_bureau_asks_about_several_subjects_at_once_on_postgres() -> anyhow::Result<()> {
    let Some(backend) = Backend::postgres() else {
        return Ok(());
    };
    a_bureau_asks_about_several_subjects_at_once_and_follows_them_to_their_results(backend).await
}

#[tokio::test]
async fn a_csv_file_of_subjects_is_a_batch_and_its_bad_lines_are_named_by_their_line()
-> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut file = String::from(
        "# officer: 李明, G620503001, ZX620503001\n\
         # asset_kinds: bank_account\n\
         case_number,kind,name,id_number,credit_code\n",
    );
    // Sixty subjects, each under its own case: the court-bank XML bank
    // (up to 50 subjects a message) gets them in fewer messages than
    // subjects.
    for i in 0..60 {
        file.push_str(&format!(
            "(2024)甘0503执{}号,person,张三,{ZHANG_SAN_ID},\n",
            2000 + i
        ));
    }
    file.push_str("(2024)甘0503执3000号,person,王五,not-a-number,\n");
    let reply = post_batch(&sys, "csv-1", "text/csv", file.into_bytes()).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["accepted"], 60, "{}", reply.body);
    // The file's 64th line: three header lines, then sixty subjects.
    assert_eq!(reply.body["refused_lines"][0]["line"], 64, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    let done = sys
        .wait_for(
            &format!("/v1/inquiry-batches/{id}"),
            Duration::from_secs(30),
            |b| b["status"] == "completed",
        )
        .await?;
    let bank_a = done["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["agency"] == "bank-a"))
        .expect("bank-a's counts");
    assert_eq!(bank_a["statuses"]["answered"], 60, "{done}");
    // Packed: bank-a's outbound rows name 60 subjects, in fewer messages.
    let sent = sys.audit("agency=bank-a&action=inquiry.send").await?;
    let messages: std::collections::BTreeSet<&str> = sent
        .iter()
        .filter_map(|e| e["body_sha256"].as_str())
        .collect();
    assert_eq!(sent.len(), 60, "one outbound row per subject");
    assert!(
        messages.len() < 60,
        "{} messages for 60 subjects",
        messages.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_without_officers_or_with_too_many_subjects_is_refused_whole() -> anyhow::Result<()>
{
    let sys = System::start().await?;
    let no_officer = json!({"officers": [], "subjects": [subject_line(CASE, zhang_san())]});
    let reply = post_batch(
        &sys,
        "k1",
        "application/json",
        serde_json::to_vec(&no_officer)?,
    )
    .await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| subject_line(CASE, zhang_san()))
        .collect();
    let body = json!({"officers": [officer()], "subjects": too_many});
    let reply = post_batch(&sys, "k2", "application/json", serde_json::to_vec(&body)?).await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "too_many_subjects");
    let reply = post_batch(&sys, "k3", "text/plain", b"hello".to_vec()).await?;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply = sys
        .call(
            reqwest::Method::POST,
            "/v1/inquiry-batches",
            Some(ENFORCEMENT),
            Some(serde_json::to_vec(&no_officer)?),
        )
        .await?;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "no key: {}",
        reply.body
    );
    let missing = sys
        .get("/v1/inquiry-batches/bat_nothing", ENFORCEMENT)
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    Ok(())
}

/// A bureau's whole file: 10,000 lines, some of them bad, to one bank that
/// takes 50 subjects a message. Every good line is asked and answered, the
/// bad ones are named by their line in the file, the event stream gives
/// every line's result once, and the results hold every line.
#[tokio::test]
async fn a_file_of_ten_thousand_lines_with_bad_ones_runs_to_its_results() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let people = mock_agencies::population::Population::generate(7, 10_000);
    let mut file = String::from(
        "# officer: 李明, G620503001, ZX620503001\n\
         # asset_kinds: bank_account\n\
         # agencies: bank-a\n\
         case_number,kind,name,id_number,credit_code\n",
    );
    let header_lines = 4;
    let mut bad = Vec::new();
    for (i, s) in people.subjects().iter().take(10_000).enumerate() {
        let line = header_lines + i + 1;
        let (id, code) = match s.kind {
            mock_agencies::population::SubjectKind::Person => (s.id_number.as_str(), ""),
            mock_agencies::population::SubjectKind::Organisation => ("", s.id_number.as_str()),
        };
        if i % 400 == 17 {
            // A check character that does not match.
            let broken = if id.is_empty() {
                "91110000600037341X"
            } else {
                "360426199101010072"
            };
            file.push_str(&format!(
                "(2024)甘0503执{}号,person,{},{broken},\n",
                20_000 + i,
                s.name
            ));
            bad.push(line as i64);
        } else {
            file.push_str(&format!(
                "(2024)甘0503执{}号,,{},{id},{code}\n",
                20_000 + i,
                s.name
            ));
        }
    }
    let reply = post_batch(&sys, "bureau-file", "text/csv", file.into_bytes()).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["lines"], 10_000);
    assert_eq!(reply.body["accepted"], 10_000 - bad.len());
    let refused: Vec<i64> = reply.body["refused_lines"]
        .as_array()
        .expect("refused lines")
        .iter()
        .filter_map(|l| l["line"].as_i64())
        .collect();
    assert_eq!(refused, bad);
    let id = reply.body["id"].as_str().expect("an id").to_owned();

    let events = follow(&sys, &id, Duration::from_secs(300)).await?;
    let mut lines = std::collections::BTreeSet::new();
    for (name, data) in &events {
        if name == "result" {
            let line = data["line"].as_i64().expect("a line");
            assert!(lines.insert(line), "line {line} twice");
        }
    }
    assert_eq!(lines.len(), 10_000);
    let (_, done) = events.last().expect("completed");
    assert_eq!(done["subjects"]["completed"], 10_000 - bad.len());
    assert_eq!(done["progress"]["pending"], 0);
    assert_eq!(done["progress"]["failed"], 0, "{}", done["progress"]);

    let text = sys
        .client
        .get(format!("{}/v1/inquiry-batches/{id}/results", sys.base))
        .bearer_auth(ENFORCEMENT)
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(text.lines().count(), 10_000);
    Ok(())
}
