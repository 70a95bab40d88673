"""A corpus of real-world models (tests/corpus/*: jaffle_shop's staging and marts, TPC-H's 22 queries, the
scaffold, application-shaped models) and two properties over it:

1. `deltapipe plan` classifies every model as the table EXPECTED says (the full "refresh: ..." text), so
   that coverage can only go up: a model that becomes incremental fails here until its entry is updated;
2. after loading the data, a run, and batches of inserts, updates (of join and group keys too), deletes
   and NULLs, each run with a threshold that keeps every refresh incremental, every model equals a full recompute
   (deltapipe.verify) and the models claimed incremental were refreshed with strategy 'incremental'.

One pytest case per model and property; the pipeline work is done once per corpus and kept in CACHE.
Real PostgreSQL (the `cli`/`dsn` fixtures), deltapipe's own load path, no mocks.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import psycopg
import pytest

CORPUS = Path(__file__).resolve().parent / "corpus"
CORPORA = ["jaffle", "tpch", "shop", "app"]

# the share of an input's rows above which a run refreshes in full: far above 1, so that every change takes
# the incremental path (on tables of tens of rows a model's change can outnumber its input's rows: an
# aggregate's changed group is a -old/+new pair, so a 100% threshold still sends some refreshes to full)
THRESHOLD = "100"

NOKEY = " (no key: a `-- key:` header allows an affected-key refresh)"

# ---------------------------------------------------------------------------------- expected plans
# corpus -> model -> what `deltapipe plan` prints after "refresh: " (after `deltapipe deploy`). Every entry was
# read and checked: an incremental claim holds for the model's shape (and test_refresh_equals_recompute checks
# it on data); a full refresh names a construct the model really has and no rule covers.
EXPECTED: dict[str, dict[str, str]] = {
    "jaffle": {
        "stg_customers": "incremental (linear)",
        "stg_orders": "incremental (linear)",
        "stg_payments": "incremental (linear)",
        "customers": "incremental (affected keys on customer_id)",
        "orders": "incremental (affected keys on order_id)",
        "customer_summary": "incremental (affected keys on customer_id)",
        # the window runs over a customer's orders; the inferred key is order_id alone
        "customer_order_numbers": "full: window function row_number not partitioned by order_id at line 12",
        "customer_statuses": "incremental (distinct)",
        "order_status_daily": "incremental (aggregate)",
        "order_customers": "incremental (linear)",
        "payment_methods": "incremental (aggregate)",
        "payment_methods_report": "incremental (linear)",
        # GROUP BY date_trunc(...): no key column to restrict by
        "monthly_revenue": "full: count(DISTINCT ...) at line 17" + NOKEY,
        "completed_orders": "incremental (linear)",
    },
    "tpch": {
        "q01": "incremental (aggregate)",
        "q02": "incremental (affected keys on p_partkey)",
        "q03": "incremental (top-N of q03__input)",
        "q04": "incremental (aggregate)",
        "q05": "incremental (aggregate)",
        "q06": "incremental (aggregate)",
        "q07": "incremental (aggregate)",
        "q08": "incremental (aggregate)",
        "q09": "incremental (aggregate)",
        "q10": "incremental (top-N of q10__input)",
        # HAVING against the sum over every German supplier's stock: a change to any of them moves the
        # threshold of every group, whatever the joins (see WRONG_PLAN)
        "q11": "full: subquery reading partsupp is not correlated by an equality to the key's rows at line 18",
        "q12": "incremental (aggregate)",
        "q13": "incremental (aggregate)",
        "q14": "incremental (aggregate)",
        "q15": "full: subquery reading a table in WHERE or SELECT at line 27" + NOKEY,
        "q16": "full: count(DISTINCT ...) at line 6" + NOKEY,
        "q17": "full: subquery reading a table in WHERE or SELECT at line 13" + NOKEY,
        "q18": "incremental (affected keys on c_custkey)",
        "q19": "incremental (aggregate)",
        "q20": "incremental (affected keys on s_name)",
        "q21": "incremental (aggregate)",
        "q22": "incremental (aggregate)",
        "order_revenue": "incremental (affected keys on o_orderkey)",
        "late_lines": "incremental (affected keys on l_orderkey)",
        "building_orders": "incremental (affected keys on o_orderkey)",
        "customer_order_counts": "incremental (affected keys on c_custkey)",
    },
    "shop": {
        "customer_totals": "incremental (affected keys on customer_id)",
        "country_revenue": "incremental (aggregate)",
        "daily_revenue": "incremental (aggregate)",
    },
    "app": {
        # the average moves with every batch of purchases: each refresh is a full one, and says why
        "above_average": "incremental (linear)",
        "active_user_stats": "incremental (linear)",
        "activity_feed": "incremental (linear)",
        # GROUP BY u.id, u.email: the key would be id alone, which inference does not see (email is nullable)
        "big_spenders": "incremental (linear)",
        "busy_games": "incremental (linear)",
        "buyers": "incremental (affected keys on id)",
        "contacts": "incremental (aggregate)",
        "conversion": "incremental (affected keys on country)",
        "countries": "incremental (distinct)",
        "country_rankings": "incremental (affected keys on country)",
        "country_reach": "incremental (affected keys on country)",
        "daily_active": "incremental (affected keys on day)",
        "engaged_users": "incremental (linear)",
        "event_facts": "incremental (linear)",
        "first_purchase": "incremental (affected keys on user_id)",
        "frequent_users": "incremental (linear)",
        "game_stats": "incremental (affected keys on game)",
        "latest_email": "incremental (first row per user_id)",
        "latest_profile": "incremental (first row per user_id)",
        "leaderboard": "incremental (top-N of leaderboard__input)",
        "never_bought": "incremental (linear)",
        "orphan_events": "incremental (affected keys on id)",
        "orphan_subscriptions": "incremental (affected keys on plan)",
        "plan_mix": "full: FULL JOIN at line 4" + NOKEY,
        "plan_report": "incremental (aggregate)",
        "referrals": "incremental (linear)",
        "revenue_vs_country": "full: c (with GROUP BY) is joined on a column other than the key at line 9",
        "running_spend": "incremental (affected keys on user_id)",
        "score_rank": "full: window function percent_rank without PARTITION BY at line 3",
        "session_stats": "incremental (affected keys on device)",
        "team_activity": "incremental (affected keys on team)",
        "team_overlap": "incremental (linear)",
        "top3_per_game": "incremental (affected keys on game)",
        "totals": "full: count(DISTINCT ...) at line 4" + NOKEY,
        "user_conversion": "incremental (aggregate)",
        "user_stats": "incremental (affected keys on id)",
    },
}

# the inputs split from top-N models and from aggregates over aggregates (deltapipe.incremental.split): each a
# model of its own
SPLIT_INPUTS: dict[str, dict[str, str]] = {
    "tpch": {"q03__input": "incremental (aggregate)", "q10__input": "incremental (aggregate)",
             # an aggregate over an aggregate: the inner one is a model of its own
             "q13__c_orders": "incremental (affected keys on c_custkey)"},
    "app": {"leaderboard__input": "incremental (linear)",
            # GROUP BY ... HAVING: the groups are a model of their own, the model filters them
            "big_spenders__groups": "incremental (aggregate)", "busy_games__groups": "incremental (affected keys on game)",
            "frequent_users__groups": "incremental (affected keys on user_id)",
            # [NOT] EXISTS / IN (SELECT ...): the values the subquery correlates on, kept with a count each
            "orphan_events__semi1": "incremental (distinct)", "buyers__semi1": "incremental (distinct)",
            # INTERSECT / EXCEPT: a GROUP BY over their UNION ALL counting each row's copies per side, its HAVING
            # split off
            "engaged_users__groups": "incremental (aggregate)", "team_overlap__groups": "incremental (aggregate)",
            "never_bought__groups": "incremental (aggregate)"},
}

# (corpus, model) -> the start of a reason for a full refresh that the model's rule gives on purpose (a scalar
# subquery whose value the corpus's batches change)
FULL_ON_PURPOSE: dict[tuple[str, str], str] = {
    ("app", "above_average"): "the value of the scalar subquery at line 6 changed",
    ("tpch", "q22"): "the value of the scalar subquery at line 18 changed",
}

# (corpus, model) -> why the plan printed today differs from EXPECTED (a wrong or misleading classification)
WRONG_PLAN: dict[tuple[str, str], str] = {
}

# (corpus, model) -> the engine bug that makes a run or verify fail for the model
ENGINE_BUGS: dict[tuple[str, str], str] = {
}


# ---------------------------------------------------------------------------------- change batches
# (source, "new", row) | (source, "set", key, {col: value}) | (source, "del", key); None is NULL
BATCHES: dict[str, list[list[tuple]]] = {
    "jaffle": [
        [
            ("raw_customers", "new", {"id": 31, "first_name": "Ada", "last_name": "L."}),
            ("raw_customers", "set", 5, {"last_name": None}),
            ("raw_customers", "del", 27),                       # a customer without orders
            ("raw_orders", "set", 3, {"user_id": 7}),           # an order moves to another customer
            ("raw_orders", "set", 10, {"status": "completed"}),
            ("raw_orders", "set", 20, {"order_date": None}),
            ("raw_orders", "new", {"id": 81, "user_id": 28, "order_date": "2018-04-09", "status": "placed"}),
            ("raw_orders", "new", {"id": 82, "user_id": None, "order_date": "2018-04-09", "status": "placed"}),
            ("raw_orders", "del", 12),                          # its payment dangles
            ("raw_orders", "set", 11, {"status": "shipped"}),   # two ops on one key in one file
            ("raw_orders", "set", 11, {"status": "completed", "user_id": 3}),
            ("raw_payments", "new", {"id": 200, "order_id": 81, "payment_method": "coupon", "amount": 700}),
            ("raw_payments", "set", 5, {"amount": 2500}),
            ("raw_payments", "set", 7, {"order_id": 17}),       # to an order that had no payment
            ("raw_payments", "set", 9, {"payment_method": None}),
            ("raw_payments", "del", 11),
            ("raw_payments", "del", 34),                        # credit_card's largest payment
            ("raw_payments", "new", {"id": 201, "order_id": 999, "payment_method": "gift_card", "amount": 300}),
            ("raw_payments", "new", {"id": 203, "order_id": 2, "payment_method": "paypal", "amount": None}),
            ("raw_payments", "new", {"id": 204, "order_id": 2, "payment_method": "cash", "amount": 100}),
            ("raw_payments", "del", 204),                       # inserted and deleted in one file
        ],
        [
            ("raw_customers", "del", 1),                        # a customer with orders goes
            ("raw_customers", "new", {"id": 27, "first_name": "Wanda", "last_name": "G."}),
            ("raw_orders", "del", 81),
            ("raw_orders", "set", 82, {"user_id": 2}),
            ("raw_orders", "set", 76, {"user_id": 5}),          # customer 4 loses all its orders
            ("raw_orders", "set", 79, {"user_id": 5}),
            ("raw_orders", "set", 1, {"order_date": "2018-05-30", "status": "return_pending"}),
            ("raw_payments", "del", 3),
            ("raw_payments", "set", 4, {"payment_method": "coupon", "amount": 100}),
            ("raw_payments", "set", 200, {"order_id": 82}),
            ("raw_payments", "set", 203, {"amount": 100}),
        ],
        [
            ("raw_orders", "set", 5, {"user_id": None, "status": None}),
            ("raw_orders", "set", 2, {"user_id": 9}),
            ("raw_payments", "set", 6, {"amount": None}),
            ("raw_payments", "new", {"id": 202, "order_id": 2, "payment_method": "bank_transfer", "amount": 1234}),
            ("raw_payments", "del", 203),                       # the paypal group goes
            ("raw_customers", "set", 9, {"first_name": "Jim"}),
            ("raw_customers", "new", {"id": 1, "first_name": "Michael", "last_name": "P."}),   # comes back
        ],
    ],
    "tpch": [
        [
            ("lineitem", "set", (279, 5), {"l_quantity": 1, "l_discount": "0.10"}),     # q05 CHINA, q18
            ("lineitem", "set", (388, 3), {"l_suppkey": 8}),                            # q05: JAPAN loses it
            ("lineitem", "set", (140, 2), {"l_shipdate": "1997-01-05"}),                # q07: out of range
            ("lineitem", "set", (241, 1), {"l_shipmode": "SHIP"}),                      # q12: MAIL -> SHIP
            ("lineitem", "del", (292, 1)),
            ("lineitem", "set", (1, 1), {"l_quantity": 30, "l_discount": "0.06"}),
            ("lineitem", "set", (2, 1), {"l_discount": None}),
            ("lineitem", "new", {"l_orderkey": 1, "l_partkey": 8, "l_suppkey": 9, "l_linenumber": 7,
                                 "l_quantity": 40, "l_extendedprice": "37000.00", "l_discount": "0.05",
                                 "l_tax": "0.02", "l_returnflag": "R", "l_linestatus": "F",
                                 "l_shipdate": "1994-02-01", "l_commitdate": "1994-02-10",
                                 "l_receiptdate": "1994-02-20", "l_shipinstruct": "DELIVER IN PERSON",
                                 "l_shipmode": "MAIL", "l_comment": "new line"}),
            ("orders", "set", 532, {"o_custkey": 26}),          # an order moves to another customer
            ("orders", "set", 58, {"o_orderdate": "1993-11-01"}),
            ("orders", "set", 162, {"o_orderpriority": "1-URGENT"}),
            ("orders", "set", 6, {"o_comment": "special packages requests"}),
            ("customer", "set", 26, {"c_nationkey": 12}),       # CHINA -> JAPAN
            ("customer", "set", 3, {"c_acctbal": "9000.00", "c_phone": "30-003-009-0033"}),
            ("customer", "del", 44),
            ("customer", "set", 41, {"c_mktsegment": "BUILDING"}),
            ("lineitem", "set", (3, 2), {"l_commitdate": "1990-01-01"}),   # a second late line in order 3
            ("supplier", "set", 3, {"s_nationkey": 20}),        # CANADA -> SAUDI ARABIA
            ("supplier", "set", 7, {"s_comment": "Customer Complaints about it"}),
            ("part", "set", 5, {"p_name": "forest green lace khaki"}),
            ("part", "set", 8, {"p_type": "PROMO BRUSHED BRASS"}),
            ("partsupp", "set", (1, 2), {"ps_supplycost": "0.50", "ps_availqty": 1}),
        ],
        [
            ("nation", "set", 6, {"n_regionkey": 2}),           # FRANCE moves to ASIA
            ("lineitem", "del", (4, 1)),
            ("orders", "del", 4),
            ("customer", "new", {"c_custkey": 46, "c_name": "Customer#000000046", "c_address": "caddr46",
                                 "c_nationkey": 3, "c_phone": "13-046-138-0506", "c_acctbal": "5000.00",
                                 "c_mktsegment": "BUILDING", "c_comment": "new"}),
            ("orders", "new", {"o_orderkey": 9000, "o_custkey": 3, "o_orderstatus": "F", "o_totalprice": "100.00",
                               "o_orderdate": "1995-03-01", "o_orderpriority": "1-URGENT", "o_clerk": "Clerk#1",
                               "o_shippriority": 0, "o_comment": None}),
            ("lineitem", "new", {"l_orderkey": 9000, "l_partkey": 1, "l_suppkey": 2, "l_linenumber": 1,
                                 "l_quantity": 300, "l_extendedprice": "100.00", "l_discount": "0.06",
                                 "l_tax": "0.01", "l_returnflag": "R", "l_linestatus": "F",
                                 "l_shipdate": "1995-03-20", "l_commitdate": "1995-03-10",
                                 "l_receiptdate": "1995-04-01", "l_shipinstruct": "NONE",
                                 "l_shipmode": "SHIP", "l_comment": None}),
            ("orders", "new", {"o_orderkey": 9001, "o_custkey": 6, "o_orderstatus": "O", "o_totalprice": "1.00",
                               "o_orderdate": "1995-03-01", "o_orderpriority": "1-URGENT", "o_clerk": "Clerk#1",
                               "o_shippriority": 0, "o_comment": None}),
            ("orders", "del", 9001),
            ("orders", "set", 5, {"o_orderpriority": None}),
            ("orders", "set", 61, {"o_orderpriority": None}),   # q04: a NULL group
            ("lineitem", "set", (2, 2), {"l_shipmode": None, "l_quantity": 1}),
            ("lineitem", "set", (320, 3), {"l_suppkey": 3}),
            ("lineitem", "set", (279, 5), {"l_quantity": 2}),
            ("lineitem", "set", (279, 5), {"l_quantity": 60}),
            ("customer", "set", 37, {"c_acctbal": None, "c_mktsegment": "MACHINERY"}),
            ("orders", "del", 379),                             # customer 17's only order
        ],
        [
            ("region", "set", 2, {"r_name": "ASIA PACIFIC"}),   # q05: every group goes
            ("partsupp", "del", (1, 2)),
            ("lineitem", "set", (9000, 1), {"l_suppkey": 3, "l_quantity": 20}),
            ("supplier", "set", 3, {"s_nationkey": 3}),
            ("part", "set", 8, {"p_brand": "Brand#23", "p_container": "MED BOX"}),
            ("lineitem", "set", (241, 1), {"l_receiptdate": "1995-02-01"}),
        ],
    ],
    "shop": [   # snapshot mode: the test writes each file whole
        [
            ("shop_customers", "set", 2, {"country": "FI"}),   # a customer moves to another country
            ("shop_customers", "new", {"id": 11, "name": "Niklaus", "country": "CH"}),
            ("shop_orders", "set", 1, {"amount": "1.00"}),
            ("shop_orders", "set", 2, {"customer_id": 1}),
            ("shop_orders", "set", 3, {"day": "2024-06-01"}),
            ("shop_orders", "new", {"id": 41, "customer_id": 11, "amount": "5.55", "day": "2024-05-02"}),
            ("shop_orders", "del", 4),
        ],
        [
            ("shop_customers", "del", 3),                      # its orders no longer join
            ("shop_customers", "set", 5, {"name": None, "country": "CH"}),
            ("shop_orders", "set", 5, {"amount": None}),
            ("shop_orders", "new", {"id": 42, "customer_id": 10, "amount": "7.00", "day": "2024-05-02"}),
            ("shop_orders", "set", 41, {"customer_id": 12}),   # no such customer
        ],
    ],
    "app": [
        [
            ("users", "new", {"id": 41, "email": "user41@example.com", "name": "User 41", "country": "DE",
                              "plan": "pro", "signup_day": "2024-03-01", "referred_by": 3}),
            ("users", "set", 3, {"country": "FR"}),
            ("users", "set", 5, {"plan": None}),
            ("users", "del", 7),                               # a user with events and scores goes
            ("users", "set", 10, {"referred_by": 2, "name": 'O"Brien, Jr.'}),
            ("users", "set", 11, {"name": "Zoë 🦊\\ \ttab"}),
            ("events", "set", 1, {"kind": "purchase", "amount": "50.00"}),
            ("events", "set", 2, {"user_id": 3}),
            ("events", "set", 3, {"amount": "20.00", "day": "2024-02-01"}),
            ("events", "new", {"id": 201, "user_id": None, "kind": "view", "amount": None, "day": "2024-02-03"}),
            ("events", "new", {"id": 202, "user_id": 3, "kind": "purchase", "amount": "300.00", "day": "2024-02-21"}),
            ("events", "new", {"id": 203, "user_id": 41, "kind": "click", "amount": None, "day": "2024-02-21"}),
            ("events", "del", 5),
            ("scores", "new", {"id": 91, "user_id": 3, "game": "chess", "score": 5000, "played_on": "2024-03-11",
                               "accuracy": "0.1"}),
            ("scores", "set", 1, {"accuracy": "1e16"}),        # an outlier, corrected in the next batch
            ("scores", "set", 2, {"accuracy": None}),
            ("scores", "set", 23, {"score": 0}),
            ("scores", "set", 30, {"game": "chess"}),
            ("scores", "set", 84, {"score": 909}),             # ties with 17 for chess's third place
            ("profile_updates", "new", {"id": 71, "user_id": 3, "email": "three@example.net", "country": "FR",
                                        "updated_at": "2024-03-01 00:00:00"}),
            ("profile_updates", "set", 48, {"email": None}),
            ("profile_updates", "set", 20, {"user_id": 12}),   # 9's latest moves to 12
            ("memberships", "new", {"team": "beta", "user_id": 3, "role": "member"}),
            ("memberships", "del", ("alpha", 7)),
            ("subscriptions", "set", 1, {"user_id": 41}),
            ("subscriptions", "new", {"id": 31, "user_id": None, "plan": None, "price": "1.00",
                                      "started": "2024-03-01"}),
            ("subscriptions", "del", 2),
            ("sessions", "set", 9, {"ended_at": "2024-02-28 23:59:59"}),   # an open session closes
            ("sessions", "set", 1, {"device": "ios"}),
            ("sessions", "new", {"id": 61, "user_id": 3, "device": "web", "started_at": "2024-02-21 10:00:00",
                                 "ended_at": None}),
            ("sessions", "del", 2),
        ],
        [
            ("users", "del", 41),
            ("users", "new", {"id": 42, "email": "user42@example.com", "name": "User 42", "country": None,
                              "plan": "team", "signup_day": "2023-12-31", "referred_by": None}),
            ("users", "set", 3, {"country": None}),
            ("events", "set", 202, {"kind": "refund"}),
            ("events", "set", 7, {"user_id": 42}),
            ("events", "del", 3),
            ("scores", "del", 91),
            ("scores", "set", 1, {"accuracy": "0.25"}),
            ("scores", "set", 3, {"accuracy": "0.3"}),
            ("scores", "set", 53, {"user_id": 42}),
            ("scores", "set", 46, {"game": "go", "score": 1000}),
            ("profile_updates", "del", 71),
            ("memberships", "set", ("alpha", 9), {"role": "member"}),
            ("subscriptions", "set", 3, {"plan": None, "user_id": 42}),
            ("sessions", "set", 61, {"ended_at": "2024-02-21 10:30:00"}),
            ("sessions", "set", 3, {"device": None}),
        ],
        [
            ("events", "new", {"id": 204, "user_id": 9, "kind": "purchase", "amount": "500.00", "day": "2024-02-10"}),
            ("events", "set", 4, {"kind": "purchase", "amount": "5.00"}),
            ("scores", "set", 35, {"score": 999}),
            ("profile_updates", "set", 48, {"updated_at": "2024-03-05 12:00:00"}),
            ("profile_updates", "set", 20, {"user_id": 9}),
            ("users", "set", 9, {"country": "BR"}),
            ("users", "new", {"id": 41, "email": "user41@example.com", "name": "User 41", "country": "DE",
                              "plan": "pro", "signup_day": "2024-03-01", "referred_by": 3}),   # comes back
        ],
    ],
}

CACHE: dict[tuple[str, str], object] = {}


# ---------------------------------------------------------------------------------- helpers
def _pipeline_sources(d: Path) -> dict[str, dict]:
    import tomllib
    cfg = tomllib.loads((d / "pipeline.toml").read_text())
    out = {}
    for s in cfg["sources"]:
        key = s["key"] if isinstance(s["key"], list) else [s["key"]]
        out[s["dataset"]] = {"file": s["file"], "key": key, "mode": s.get("mode", "snapshot"),
                             "op": s.get("op_column")}
    return out


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    return header, [{h: (v if v != "" else None) for h, v in zip(header, r)} for r in rows[1:]]


def _write(path: Path, header: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    buf.write(",".join(header) + "\n")
    for r in rows:
        cells = []
        for h in header:
            v = r.get(h)
            if v is None:
                cells.append("")
            else:
                v = str(v)
                cells.append('"%s"' % v.replace('"', '""') if (v == "" or any(c in v for c in ',"\n')) else v)
        buf.write(",".join(cells) + "\n")
    path.write_text(buf.getvalue())


class Sources:
    """The sources of a copied corpus: their current rows (as the test knows them) and change files."""

    def __init__(self, d: Path):
        self.d = d
        self.meta = _pipeline_sources(d)
        self.state: dict[str, dict] = {}
        self.header: dict[str, list[str]] = {}
        for ds, m in self.meta.items():
            header, rows = _read(d / m["file"])
            cols = [h for h in header if h != m["op"]]
            self.header[ds] = header
            self.state[ds] = {self._key(ds, r): {c: r[c] for c in cols} for r in rows}

    def _key(self, ds: str, row: dict) -> tuple:
        return tuple(str(row[k]) if row[k] is not None else None for k in self.meta[ds]["key"])

    def apply(self, batch: list[tuple]) -> None:
        changes: dict[str, list[dict]] = {ds: [] for ds in self.meta}
        for ch in batch:
            ds, what = ch[0], ch[1]
            m = self.meta[ds]
            st = self.state[ds]
            if what == "new":
                row = {c: ch[2].get(c) for c in self.header[ds] if c != m["op"]}
                k = self._key(ds, row)
                assert k not in st, ("exists", ds, k)
                st[k] = row
                changes[ds].append({**row, m["op"] or "": "insert"})
                continue
            k = tuple(str(x) for x in (ch[2] if isinstance(ch[2], tuple) else (ch[2],)))
            assert k in st, ("no such row", ds, k)
            if what == "set":
                st[k] = {**st[k], **ch[3]}
                changes[ds].append({**st[k], m["op"] or "": "update" if len(changes[ds]) % 2 else "upsert"})
            elif what == "del":
                old = st.pop(k)
                changes[ds].append({**{c: old[c] for c in m["key"]}, m["op"] or "": "delete"})
            else:
                raise AssertionError(ch)
        for ds, m in self.meta.items():
            path = self.d / m["file"]
            if m["mode"] == "changes":
                _write(path, self.header[ds], changes[ds])
            else:   # snapshot: the whole truth
                _write(path, self.header[ds], list(self.state[ds].values()))


def _refresh_lines(output: str) -> dict[str, str]:
    lines = output.splitlines()
    out = {}
    for i, ln in enumerate(lines):
        m = re.match(r"^\s+\S+\s+model\s+(\S+)", ln)
        if m and i + 1 < len(lines) and lines[i + 1].strip().startswith("refresh: "):
            out[m.group(1)] = lines[i + 1].strip()[len("refresh: "):]
    return out


def _cached(key: tuple, compute):
    """compute() once per key; a failure is kept too, so that the other cases of a corpus fail fast."""
    if key not in CACHE:
        try:
            CACHE[key] = compute()
        except Exception as e:  # noqa: BLE001
            CACHE[key] = e
    v = CACHE[key]
    if isinstance(v, Exception):
        raise v
    return v


def _plan(corpus: str, request, tmp_path_factory) -> dict[str, str]:
    """model -> the text after "refresh: " that `deltapipe plan` prints once the corpus is deployed."""
    def compute():
        cli = request.getfixturevalue("cli")
        d = tmp_path_factory.mktemp("plan") / corpus
        shutil.copytree(CORPUS / corpus, d)
        r = cli("deploy", d)
        assert r.exit_code == 0, r.output
        r = cli("plan", d)
        assert r.exit_code == 0, r.output
        return _refresh_lines(r.output)
    return _cached(("plan", corpus), compute)


def _node_runs(conn, run_id: int) -> dict[str, tuple]:
    """node -> (status, strategy, full_because, error, (inserted, updated, deleted), sqlstate)"""
    return {r[0]: (r[1], r[2], r[3], r[4], (r[5], r[6], r[7]), r[8]) for r in conn.execute(
        "SELECT node, status, strategy, full_because, error, inserted, updated, deleted, sqlstate "
        "FROM deltapipe.node_run WHERE run_id = %s", (run_id,)).fetchall()}


def _last_run(conn, pipeline: str) -> int:
    return conn.execute("SELECT max(id) FROM deltapipe.run WHERE pipeline = %s", (pipeline,)).fetchone()[0]


def _verify(conn, pipeline: str) -> dict[str, list]:
    bad: dict[str, list] = {}
    for model, side, row in conn.execute("SELECT model, side, row FROM deltapipe.verify(%s)", (pipeline,)):
        bad.setdefault(model, []).append((side, row))
    return bad


def _runs(corpus: str, request, tmp_path_factory) -> list[dict]:
    """Run the corpus once: load and run, then each batch; per run, what each node went through."""
    def compute():
        cli = request.getfixturevalue("cli")
        dsn = request.getfixturevalue("dsn")
        d = tmp_path_factory.mktemp("runs") / corpus
        shutil.copytree(CORPUS / corpus, d)
        src = Sources(d)
        steps = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for b in range(len(BATCHES[corpus]) + 1):
                args = ["run", d, "--no-timeline", "--keep-going"]
                if b:
                    src.apply(BATCHES[corpus][b - 1])
                    args += ["--incremental-threshold", THRESHOLD]
                r = cli(*args)
                nodes = _node_runs(conn, _last_run(conn, corpus))
                try:
                    bad = _verify(conn, corpus)
                except psycopg.Error as e:
                    bad = {"*": [("error", str(e))]}
                rejects = conn.execute("SELECT count(*) FROM deltapipe.reject").fetchone()[0]
                assert rejects == 0, "a batch of %s has rows the load rejects" % corpus
                steps.append({"batch": b, "exit": r.exit_code, "output": r.output, "nodes": nodes, "verify": bad})
                if os.environ.get("CORPUS_DEBUG"):   # CORPUS_DEBUG=1 pytest -s: what each run did
                    print("\n== %s batch %d exit %d" % (corpus, b, r.exit_code))
                    for n, v in sorted(nodes.items()):
                        print("  %-24s %-8s %-12s %-14s %s %s" % (n, v[0], v[1], v[4], v[2] or "", v[3] or ""))
                    print("  verify:", bad)
        return steps
    return _cached(("runs", corpus), compute)


def _cases(table: dict[tuple[str, str], str]):
    out = []
    for corpus in CORPORA:
        for model in EXPECTED[corpus]:
            marks = []
            if (corpus, model) in table:
                marks.append(pytest.mark.xfail(strict=True, reason=table[(corpus, model)]))
            out.append(pytest.param(corpus, model, id="%s/%s" % (corpus, model), marks=marks))
    return out


# ---------------------------------------------------------------------------------- tests
def test_corpus_lists_every_model():
    for corpus in CORPORA:
        files = sorted(p.stem for p in (CORPUS / corpus / "models").glob("*.sql"))
        assert files == sorted(EXPECTED[corpus]), corpus


@pytest.mark.parametrize("corpus, model", _cases(WRONG_PLAN))
def test_plan_classifies(corpus, model, request, tmp_path_factory):
    got = _plan(corpus, request, tmp_path_factory)
    assert got.get(model) == EXPECTED[corpus][model]


@pytest.mark.parametrize("corpus, model", [(c, m) for c in SPLIT_INPUTS for m in SPLIT_INPUTS[c]])
def test_plan_classifies_the_split_inputs(corpus, model, request, tmp_path_factory):
    got = _plan(corpus, request, tmp_path_factory)
    assert got.get(model) == SPLIT_INPUTS[corpus][model]
    # and every split input is listed here
    assert set(got) - set(EXPECTED[corpus]) == set(SPLIT_INPUTS.get(corpus, {}))


@pytest.mark.parametrize("corpus, model", _cases(ENGINE_BUGS))
def test_refresh_equals_recompute(corpus, model, request, tmp_path_factory):
    claimed = _plan(corpus, request, tmp_path_factory).get(model, "").startswith("incremental")
    steps = _runs(corpus, request, tmp_path_factory)
    ran_incrementally = 0
    for st in steps:
        node = st["nodes"].get(model)
        assert node is not None, (st["batch"], "no node_run")
        status, strategy, full_because, error = node[:4]
        assert status in ("done", "skipped"), (st["batch"], status, error)
        assert model not in st["verify"] and "*" not in st["verify"], (st["batch"], st["verify"].get(model),
                                                                         st["verify"].get("*"))
        if st["batch"] and claimed and status == "done":
            if (corpus, model) in FULL_ON_PURPOSE and strategy != "incremental":
                assert (full_because or "").startswith(FULL_ON_PURPOSE[(corpus, model)]), (st["batch"], full_because)
                continue
            assert strategy == "incremental", (st["batch"], strategy, full_because)
            ran_incrementally += 1
    if claimed and (corpus, model) not in FULL_ON_PURPOSE:
        assert ran_incrementally, "never refreshed incrementally"


def test_plan_before_deploy_says_what_deploy_will(cli, tmp_path):
    d = tmp_path / "shop"
    shutil.copytree(CORPUS / "shop", d)
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    assert _refresh_lines(r.output) == EXPECTED["shop"]


def test_summary(request, tmp_path_factory, capsys):
    """Coverage per corpus: models plan calls incremental, out of all (and what EXPECTED says)."""
    lines = []
    tot = [0, 0, 0]
    for corpus in CORPORA:
        got = {m: v for m, v in _plan(corpus, request, tmp_path_factory).items() if m in EXPECTED[corpus]}
        inc = sum(1 for v in got.values() if v.startswith("incremental"))
        exp = sum(1 for v in EXPECTED[corpus].values() if v.startswith("incremental"))
        tot = [tot[0] + inc, tot[1] + len(got), tot[2] + exp]
        lines.append("%-7s %2d / %2d incremental (expected %d)" % (corpus, inc, len(got), exp))
    lines.append("%-7s %2d / %2d incremental (expected %d)" % ("all", *tot))
    with capsys.disabled():
        print("\ncorpus coverage (deltapipe plan):\n  " + "\n  ".join(lines))
