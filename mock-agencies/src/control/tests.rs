//! The ledger's rules, kind by kind, as stories over the named fixtures,
//! without any wire.

use sha2::{Digest, Sha256};

use super::*;
use crate::fixtures::{self, *};
use crate::further_book::{Book, FurtherBook};
use crate::ledger::Found;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
}

const TODAY: NaiveDate = match NaiveDate::from_ymd_opt(2026, 11, 27) {
    Some(date) => date,
    None => panic!("a date"),
};
const CASE: &str = "(2024)甘0503执1234号";
const OTHER_CASE: &str = "(2024)甘0503执999号";
const COURT: &str = "天水市麦积区人民法院";

fn vehicles() -> Holdings {
    Holdings::further(FurtherBook::Vehicles(Book::new(fixtures::vehicles(
        VEHICLE_V,
    ))))
}

fn securities() -> Holdings {
    Holdings::further(FurtherBook::Securities(Book::new(fixtures::securities(
        SECURITIES_S,
    ))))
}

fn payment_accounts() -> Holdings {
    Holdings::further(FurtherBook::PaymentAccounts(Book::new(
        fixtures::payment_accounts(PAYMENT_P),
    )))
}

fn fund_accounts() -> Holdings {
    Holdings::further(FurtherBook::FundAccounts(Book::new(
        fixtures::fund_accounts(FUND_F),
    )))
}

fn equity() -> Holdings {
    Holdings::further(FurtherBook::Equity(Book::new(fixtures::equity(MARKET_M))))
}

/// An order of `action` by the subject `holder` on `target`.
struct Order {
    request: ControlRequest,
}

impl Order {
    fn new(rn: &str, action: Action, holder: &str, target: &str) -> Self {
        let term = action.needs_term();
        Self {
            request: ControlRequest {
                request_number: rn.into(),
                action,
                case_number: CASE.into(),
                court_name: COURT.into(),
                holder_id: holder.into(),
                prior_request_number: None,
                items: vec![ControlItem {
                    target: target.into(),
                    amount: None,
                    start_date: term.then_some(TODAY),
                    end_date: term.then(|| d(2027, 11, 26)),
                }],
                documents: vec![Document {
                    number: "(2024)甘0503执1234号之一".into(),
                    sha256: "0".repeat(64),
                }],
            },
        }
    }

    fn amount(mut self, amount: i64) -> Self {
        for item in &mut self.request.items {
            item.amount = Some(amount);
        }
        self
    }

    fn until(mut self, end: NaiveDate) -> Self {
        for item in &mut self.request.items {
            item.end_date = Some(end);
        }
        self
    }

    fn prior(mut self, rn: &str) -> Self {
        self.request.prior_request_number = Some(rn.into());
        self
    }

    fn case(mut self, case_number: &str) -> Self {
        self.request.case_number = case_number.into();
        self
    }

    /// Decided by `book` over `holdings` today: its one result.
    fn decide(&self, book: &mut ControlBook, holdings: &Holdings) -> ItemResult {
        let outcome = book.apply(holdings, &self.request, TODAY, "T", None);
        outcome.results.into_iter().next().unwrap_or_else(|| {
            panic!("{} has a result", self.request.request_number);
        })
    }
}

fn result_of(book: &ControlBook, rn: &str) -> ItemResult {
    book.status(rn)
        .and_then(|o| o.results.into_iter().next())
        .unwrap_or_else(|| panic!("{rn} was decided"))
}

#[test]
fn documents_are_acknowledged_as_sent_unless_their_number_says_tampered() {
    let sent = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let plain = Document {
        number: "协冻-1".into(),
        sha256: sent.into(),
    };
    assert_eq!(plain.acknowledged(), plain);
    let tampered = Document {
        number: "协冻-1-TAMPERED".into(),
        sha256: sent.into(),
    };
    let ack = tampered.acknowledged();
    assert_eq!(ack.number, "协冻-1-TAMPERED");
    assert_ne!(ack.sha256, sent);
    assert!(is_sha256_hex(&ack.sha256));
    // The SHA-256 of the text "9f86...0a08", hex.
    let expected: String = Sha256::digest(sent.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(ack.sha256, expected);
}

#[test]
fn a_freeze_of_more_shares_than_are_free_freezes_the_free_ones_and_reports_the_shortfall() {
    let holdings = securities();
    let mut book = ControlBook::default();
    let target = securities_target(ZHANG_SAN_SECURITIES_ACCOUNT, ZHANG_SAN_SECURITY_CODE);
    let r = Order::new("K1", Action::Freeze, ZHANG_SAN_ID, &target)
        .amount(15_000)
        .until(d(2029, 11, 26))
        .decide(&mut book, &holdings);
    assert_eq!(r.state, ControlState::InForce);
    assert_eq!((r.controlled, r.shortfall), (12_000, 3_000));
    assert_eq!(r.reason, "可冻结证券数量不足");
    // A second freeze of another case finds nothing free and another
    // authority's freeze in force: it waits.
    let r = Order::new("K2", Action::Freeze, ZHANG_SAN_ID, &target)
        .amount(1_000)
        .case(OTHER_CASE)
        .decide(&mut book, &holdings);
    assert_eq!(r.state, ControlState::Waiting);
    assert_eq!(r.queue_position, 1);
    // The inquiry answer shows both, and no share free.
    let Found::Further(found) = book.found(&holdings, &[0]) else {
        panic!("securities");
    };
    let holding = &found.securities()[0];
    assert_eq!(holding.free_quantity(), 0);
    assert_eq!(holding.freezes.len(), 2);
    assert_eq!(holding.freezes[1].quantity, Some(1_000));
    assert_eq!(holding.freezes[1].queue_position, 1);
}

#[test]
fn shares_all_frozen_by_another_court_make_a_freeze_wait_and_its_lifting_promotes_it() {
    let holdings = securities();
    let mut book = ControlBook::default();
    let target = securities_target(ZHAO_LIU_SECURITIES_ACCOUNT, ZHAO_LIU_SECURITY_CODE);
    let r = Order::new("K1", Action::Freeze, ZHAO_LIU_ID, &target)
        .amount(2_000)
        .decide(&mut book, &holdings);
    assert_eq!(r.state, ControlState::Waiting);
    assert_eq!(r.reason, "已被秦州区人民法院冻结，轮候");
    assert_eq!((r.controlled, r.shortfall, r.queue_position), (0, 2_000, 1));
    let lifted = book
        .lift(&holdings, &target, ZHAO_LIU_SECURITIES_FREEZE_DOCUMENT)
        .expect("the standing freeze is there");
    assert_eq!(lifted.promoted.as_deref(), Some("K1"));
    let r = result_of(&book, "K1");
    assert_eq!(r.state, ControlState::InForce);
    assert_eq!((r.controlled, r.shortfall, r.queue_position), (2_000, 0, 0));
}

#[test]
fn a_vehicle_sealed_by_another_court_gets_a_waiting_seal_behind_the_waiting_one() {
    let holdings = vehicles();
    let mut book = ControlBook::default();
    let r = Order::new("K1", Action::Seal, LI_SI_ID, LI_SI_VIN).decide(&mut book, &holdings);
    assert_eq!(r.state, ControlState::Waiting);
    assert_eq!(r.queue_position, 2, "behind 甘谷县人民法院's waiting seal");
    assert_eq!(r.reason, "已被秦州区人民法院查封，轮候");
    // The in-force seal lifted: 甘谷县人民法院's takes effect, ours moves up.
    let lifted = book
        .lift(&holdings, LI_SI_VIN, LI_SI_SEAL_DOCUMENT)
        .expect("lifted");
    assert_eq!(
        lifted.promoted.as_deref(),
        Some(LI_SI_WAITING_SEAL_DOCUMENT)
    );
    assert_eq!(result_of(&book, "K1").queue_position, 1);
}

#[test]
fn releasing_a_seal_in_force_promotes_the_first_waiting_one() {
    let holdings = vehicles();
    let mut book = ControlBook::default();
    let r = Order::new("K1", Action::Seal, ZHANG_SAN_ID, ZHANG_SAN_VIN)
        .until(d(2028, 11, 26))
        .decide(&mut book, &holdings);
    assert_eq!(r.state, ControlState::InForce);
    assert_eq!(r.measure_number, "T2026112700001");
    // The same case again: refused; another case: waits.
    let again =
        Order::new("K2", Action::Seal, ZHANG_SAN_ID, ZHANG_SAN_VIN).decide(&mut book, &holdings);
    assert_eq!(again.reason, "该车辆已被本案查封");
    let other = Order::new("K3", Action::Seal, ZHANG_SAN_ID, ZHANG_SAN_VIN)
        .case(OTHER_CASE)
        .decide(&mut book, &holdings);
    assert_eq!(other.state, ControlState::Waiting);
    // The inquiry answer: sealed (K), one seal waiting.
    let Found::Further(found) = book.found(&holdings, &[0]) else {
        panic!("vehicles");
    };
    assert_eq!(found.vehicles()[0].state_flags(), "K");
    let released = Order::new("K4", Action::ReleaseSeal, ZHANG_SAN_ID, ZHANG_SAN_VIN)
        .prior("K1")
        .decide(&mut book, &holdings);
    assert_eq!(released.state, ControlState::InForce, "the release is made");
    assert_eq!(result_of(&book, "K1").state, ControlState::Released);
    let promoted = result_of(&book, "K3");
    assert_eq!(promoted.state, ControlState::InForce);
    assert_eq!(promoted.queue_position, 0);
}

#[test]
fn every_kind_refuses_a_term_longer_than_its_own() {
    let cases = [
        (
            vehicles(),
            ZHANG_SAN_ID,
            ZHANG_SAN_VIN.to_owned(),
            2,
            "查封期限超过两年",
        ),
        (
            securities(),
            ZHANG_SAN_ID,
            securities_target(ZHANG_SAN_SECURITIES_ACCOUNT, ZHANG_SAN_SECURITY_CODE),
            3,
            "冻结期限超过三年",
        ),
        (
            payment_accounts(),
            ZHANG_SAN_ID,
            ZHANG_SAN_PAYMENT_ACCOUNT.to_owned(),
            1,
            "冻结期限超过一年",
        ),
        (
            fund_accounts(),
            ZHANG_SAN_ID,
            ZHANG_SAN_FUND_ACCOUNT.to_owned(),
            1,
            "冻结期限超过一年",
        ),
        (
            equity(),
            ZHAO_LIU_ID,
            ZHAO_LIU_EQUITY_CREDIT_CODE.to_owned(),
            3,
            "冻结期限超过三年",
        ),
    ];
    for (holdings, holder, target, years, too_long) in cases {
        let kind = AssetKind::of(&holdings);
        let action = if kind == AssetKind::Vehicle {
            Action::Seal
        } else {
            Action::Freeze
        };
        let mut book = ControlBook::default();
        let longest = d(2026 + years, 11, 26);
        let refused = Order::new("K1", action, holder, &target)
            .amount(100)
            .until(longest.succ_opt().unwrap_or(longest))
            .decide(&mut book, &holdings);
        assert_eq!(refused.state, ControlState::NotControlled, "{kind:?}");
        assert_eq!(refused.reason, too_long, "{kind:?}");
        let applied = Order::new("K2", action, holder, &target)
            .amount(100)
            .until(longest)
            .decide(&mut book, &holdings);
        assert_eq!(applied.state, ControlState::InForce, "{kind:?}");
    }
}

#[test]
fn a_payment_account_is_frozen_for_what_it_holds_and_deducted_from_to_the_court() {
    let holdings = payment_accounts();
    let mut book = ControlBook::default();
    let account = ZHANG_SAN_PAYMENT_ACCOUNT;
    let r = Order::new("K1", Action::Freeze, ZHANG_SAN_ID, account)
        .amount(500_000)
        .decide(&mut book, &holdings);
    assert_eq!((r.controlled, r.shortfall), (356_000, 144_000));
    assert_eq!(r.reason, "余额不足");
    let too_much = Order::new("K2", Action::Deduct, ZHANG_SAN_ID, account)
        .amount(400_000)
        .prior("K1")
        .decide(&mut book, &holdings);
    assert_eq!(too_much.reason, "划拨金额超过冻结金额");
    let moved = Order::new("K3", Action::Deduct, ZHANG_SAN_ID, account)
        .amount(100_000)
        .prior("K1")
        .decide(&mut book, &holdings);
    assert_eq!(moved.state, ControlState::InForce);
    assert_eq!(moved.controlled, 100_000);
    assert_eq!(book.transfers().len(), 1);
    assert_eq!(book.transfers()[0].amount_fen, 100_000);
    // The money left the balance; what is still frozen is what is left.
    let Found::Further(found) = book.found(&holdings, &[0]) else {
        panic!("payment accounts");
    };
    let a = &found.payment_accounts()[0];
    assert_eq!(a.balance_fen, 256_000);
    assert_eq!(a.freezes[0].amount_fen, Some(256_000));
    assert_eq!(a.available_fen(), 0);
    assert_eq!(result_of(&book, "K1").controlled, 256_000);
}

#[test]
fn a_provident_fund_deduction_is_refused_unless_the_account_is_eligible_for_withdrawal() {
    let holdings = fund_accounts();
    let mut book = ControlBook::default();
    for (holder, account, freeze, deduct) in [
        (ZHANG_SAN_ID, ZHANG_SAN_FUND_ACCOUNT, "K1", "K2"),
        (ZHAO_LIU_ID, ZHAO_LIU_FUND_ACCOUNT, "K3", "K4"),
    ] {
        let frozen = Order::new(freeze, Action::Freeze, holder, account)
            .amount(1_000_000)
            .decide(&mut book, &holdings);
        assert_eq!(frozen.state, ControlState::InForce, "{account}");
        let r = Order::new(deduct, Action::Deduct, holder, account)
            .amount(400_000)
            .prior(freeze)
            .decide(&mut book, &holdings);
        if account == ZHANG_SAN_FUND_ACCOUNT {
            const { assert!(!ZHANG_SAN_FUND_WITHDRAWABLE) };
            assert_eq!(r.state, ControlState::NotControlled);
            assert_eq!(r.reason, "账户未满足提取条件，不能划拨");
            assert_eq!(result_of(&book, freeze).controlled, 1_000_000, "intact");
        } else {
            const { assert!(ZHAO_LIU_FUND_WITHDRAWABLE) };
            assert_eq!(r.state, ControlState::InForce);
            assert_eq!(r.controlled, 400_000);
        }
    }
    assert_eq!(book.transfers().len(), 1, "only the eligible account paid");
    assert_eq!(book.transfers()[0].from_account, ZHAO_LIU_FUND_ACCOUNT);
}

#[test]
fn equity_frozen_by_another_court_makes_a_freeze_wait_and_free_equity_is_frozen_whole() {
    let holdings = equity();
    let mut book = ControlBook::default();
    let waiting = Order::new(
        "K1",
        Action::Freeze,
        SAMPLE_ORG_ID,
        SAMPLE_ORG_EQUITY_CREDIT_CODE,
    )
    .until(d(2029, 11, 26))
    .decide(&mut book, &holdings);
    assert_eq!(waiting.state, ControlState::Waiting);
    assert_eq!(waiting.queue_position, 1);
    assert_eq!(waiting.reason, "已被秦州区人民法院冻结，轮候");
    let whole = Order::new(
        "K2",
        Action::Freeze,
        ZHAO_LIU_ID,
        ZHAO_LIU_EQUITY_CREDIT_CODE,
    )
    .decide(&mut book, &holdings);
    assert_eq!(whole.state, ControlState::InForce);
    assert_eq!(
        whole.controlled, ZHAO_LIU_EQUITY_SUBSCRIBED_FEN,
        "the whole holding"
    );
    // Someone else's equity in that company is not the subject's.
    let not_owned = Order::new(
        "K3",
        Action::Freeze,
        ZHANG_SAN_ID,
        ZHAO_LIU_EQUITY_CREDIT_CODE,
    )
    .decide(&mut book, &holdings);
    assert_eq!(not_owned.reason, "股东与被执行人不符");
    let Found::Further(found) = book.found(&holdings, &[0, 1]) else {
        panic!("equity");
    };
    let freezes = &found.equity()[0].freezes;
    assert_eq!(freezes.len(), 2);
    assert_eq!(
        freezes[0].amount_fen,
        Some(SAMPLE_ORG_EQUITY_FREEZE_FEN),
        "as it stood"
    );
    assert_eq!(freezes[1].queue_position, 1);
}

#[test]
fn a_measure_lapses_at_its_end_date_and_the_next_in_line_takes_effect() {
    let holdings = equity();
    let mut book = ControlBook::default();
    let target = ZHAO_LIU_EQUITY_CREDIT_CODE;
    Order::new("K1", Action::Freeze, ZHAO_LIU_ID, target).decide(&mut book, &holdings);
    let waiting = Order::new("K2", Action::Freeze, ZHAO_LIU_ID, target)
        .case(OTHER_CASE)
        .until(d(2029, 11, 26))
        .decide(&mut book, &holdings);
    assert_eq!(waiting.state, ControlState::Waiting);
    book.sweep(d(2027, 11, 26));
    assert_eq!(
        result_of(&book, "K1").state,
        ControlState::InForce,
        "its last day"
    );
    book.sweep(d(2027, 11, 27));
    assert_eq!(result_of(&book, "K1").state, ControlState::Lapsed);
    assert_eq!(result_of(&book, "K2").state, ControlState::InForce);
    // A renewal before the end would have kept it: a lapsed one cannot be renewed.
    let renew = Order::new("K3", Action::Renew, ZHAO_LIU_ID, target)
        .prior("K1")
        .decide(&mut book, &holdings);
    assert_eq!(renew.reason, "原冻结已失效或已解除，不能续冻");
}

#[test]
fn a_request_number_is_decided_once_and_one_never_seen_is_unknown() {
    let holdings = payment_accounts();
    let mut book = ControlBook::default();
    let order = Order::new(
        "K1",
        Action::Freeze,
        ZHANG_SAN_ID,
        ZHANG_SAN_PAYMENT_ACCOUNT,
    )
    .amount(1_000);
    let first = order.decide(&mut book, &holdings);
    let repeated = book.repeat("K1").expect("decided");
    assert_eq!(repeated.results, [first]);
    assert_eq!(book.measures.len(), 1, "nothing applied again");
    let controls = book.ledger_controls(AssetKind::PaymentAccount, |_| true);
    assert_eq!(controls[0]["received_count"], 2);
    assert_eq!(controls[0]["applied_count"], 1);
    assert!(book.status("K-never").is_none());
    assert!(book.repeat("K-never").is_none());
}

#[test]
fn the_ledger_shows_shares_by_quantity_and_money_leaving_the_balance() {
    let holdings = securities();
    let mut book = ControlBook::default();
    let target = securities_target(ZHAO_LIU_SECURITIES_ACCOUNT, ZHAO_LIU_SECURITY_CODE);
    Order::new("K1", Action::Freeze, ZHAO_LIU_ID, &target)
        .amount(500)
        .decide(&mut book, &holdings);
    let measures = book.ledger_measures(&holdings, 1);
    assert_eq!(measures.len(), 2);
    assert_eq!(measures[0]["origin"], "standing");
    assert_eq!(measures[0]["quantity"], ZHAO_LIU_SECURITIES_FREEZE_QUANTITY);
    assert_eq!(measures[1]["origin"], "control");
    assert_eq!(measures[1]["state"], "waiting");
    assert_eq!(measures[1]["asked_quantity"], 500);
    assert_eq!(measures[1]["queue_position"], 1);
    assert_eq!(measures[1]["request_number"], "K1");
    let controls = book.ledger_controls(AssetKind::Securities, |_| true);
    assert_eq!(controls[0]["results"][0]["controlled_quantity"], 0);
}
