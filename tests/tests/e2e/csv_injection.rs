//! An auditor opens the CSV export in a spreadsheet: text a client sent
//! that a spreadsheet would run as a formula (an officer named
//! `=HYPERLINK(...)`) comes out as text, with a leading `'`.

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_formula_in_an_officers_name_comes_out_of_the_csv_as_text() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let names = ["=HYPERLINK(\"http://x\")", "@SUM(1+1)", "+1+2", "-1+2"];
    for name in names {
        let mut body = inquiry_body(zhang_san());
        body["officers"] =
            json!([{"name": name, "work_card_no": "G620503001", "credential_no": "ZX620503001"}]);
        let reply = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    let response = sys
        .client
        .get(format!(
            "{}/v1/audit/events?limit=1000&action=inquiry.create",
            sys.base
        ))
        .bearer_auth(AUDITOR)
        .header("accept", "text/csv")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers()?.get(4), Some("officers"));
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let officers: Vec<&str> = rows.iter().filter_map(|r| r.get(4)).collect();
    let expected: Vec<String> = names
        .iter()
        .map(|n| format!("'{n} (G620503001/ZX620503001)"))
        .collect();
    assert_eq!(officers, expected);
    // No text cell starts a formula; seq and latency_ms are numbers.
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if [0, 12, 16].contains(&i) {
                assert!(cell.is_empty() || cell.parse::<i64>().is_ok(), "{cell}");
            } else {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "column {i}: {cell}"
                );
            }
        }
    }
    // The JSON answer keeps the names as they were sent.
    let events = sys.audit("action=inquiry.create").await?;
    assert_eq!(
        events[0]["officers"][0],
        "=HYPERLINK(\"http://x\") (G620503001/ZX620503001)"
    );
    Ok(())
}
