"""Write the small CSV files of the corpus pipelines (deterministic: run it again, same bytes).

    python tests/corpus/generate.py

Every source of jaffle, tpch and app is in mode "changes": its first file holds `insert` rows; the
test writes later files with inserts, updates, deletes. shop keeps the scaffold's snapshot mode.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_csv(path: Path, header: str, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [header]
    for r in rows:
        out.append(",".join("" if v is None else str(v) for v in r))
    path.write_text("\n".join(out) + "\n")


def day(start: dt.date, n: int) -> str:
    return (start + dt.timedelta(days=n)).isoformat()


# ---------------------------------------------------------------------------------------- jaffle
FIRST = ["Michael", "Shawn", "Kathleen", "Jimmy", "Katherine", "Sarah", "Martin", "Frank", "Jennifer", "Henry",
         "Fred", "Amy", "Kathleen", "Steve", "Teresa", "Amanda", "Kimberly", "Johnny", "Virginia", "Anna",
         "Willie", "Sean", "Mildred", "David", "Victor", "Aaron", "Benjamin", "Lisa", "Benjamin", "Wanda"]
LAST = "PHRPBMGRNRHMFMRSRSSCLBAMRNLOTRYBFMKDCRGHDRFG"


def jaffle(rng: random.Random) -> None:
    d = HERE / "jaffle" / "data"
    write_csv(d / "raw_customers.csv", "op,id,first_name,last_name",
              [("insert", i + 1, FIRST[i], LAST[i] + ".") for i in range(30)])
    statuses = ["placed", "shipped", "completed", "completed", "completed", "return_pending", "returned"]
    orders = []
    for i in range(1, 81):
        user = rng.randint(1, 26)          # customers 27-30 have no order yet
        orders.append(("insert", i, user, day(dt.date(2018, 1, 1), rng.randint(0, 97)), rng.choice(statuses)))
    write_csv(d / "raw_orders.csv", "op,id,user_id,order_date,status", orders)
    methods = ["credit_card", "credit_card", "coupon", "bank_transfer", "gift_card"]
    pays = []
    pid = 0
    for o in range(1, 81):
        if o % 17 == 0:
            continue                       # some orders are not paid (yet)
        for _ in range(1 if rng.random() < 0.75 else 2):
            pid += 1
            pays.append(("insert", pid, o, rng.choice(methods), rng.randint(1, 30) * 100))
    write_csv(d / "raw_payments.csv", "op,id,order_id,payment_method,amount", pays)


# ---------------------------------------------------------------------------------------- tpch
REGIONS = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
NATIONS = [("ALGERIA", 0), ("ARGENTINA", 1), ("BRAZIL", 1), ("CANADA", 1), ("EGYPT", 4), ("ETHIOPIA", 0),
           ("FRANCE", 3), ("GERMANY", 3), ("INDIA", 2), ("INDONESIA", 2), ("IRAN", 4), ("IRAQ", 4), ("JAPAN", 2),
           ("JORDAN", 4), ("KENYA", 0), ("MOROCCO", 0), ("MOZAMBIQUE", 0), ("PERU", 1), ("CHINA", 2),
           ("ROMANIA", 3), ("SAUDI ARABIA", 4), ("VIETNAM", 2), ("RUSSIA", 3), ("UNITED KINGDOM", 3),
           ("UNITED STATES", 1)]
COLORS = ["almond", "antique", "aquamarine", "azure", "beige", "bisque", "black", "blue", "blush", "brown",
          "burlywood", "chartreuse", "chiffon", "chocolate", "coral", "cornflower", "cream", "cyan", "dark",
          "forest", "frosted", "green", "honeydew", "hot", "indian", "ivory", "khaki", "lace", "lavender", "lemon"]
TYPES1 = ["STANDARD", "SMALL", "MEDIUM", "LARGE", "ECONOMY", "PROMO"]
TYPES2 = ["ANODIZED", "BURNISHED", "PLATED", "POLISHED", "BRUSHED"]
TYPES3 = ["TIN", "NICKEL", "BRASS", "STEEL", "COPPER"]
CONT1 = ["SM", "LG", "MED", "JUMBO", "WRAP"]
CONT2 = ["CASE", "BOX", "BAG", "JAR", "PKG", "PACK", "CAN", "DRUM"]
SEGMENTS = ["AUTOMOBILE", "BUILDING", "FURNITURE", "MACHINERY", "HOUSEHOLD"]
PRIORITIES = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
INSTRUCT = ["DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"]
MODES = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"]
WORDS = ["furiously", "carefully", "quickly", "slyly", "blithely", "regular", "express", "final", "pending",
         "ironic", "bold", "deposits", "requests", "packages", "accounts", "theodolites", "pinto", "beans"]


Q19_PARTS = {12: ("Brand#12", "SM CASE", 3), 23: ("Brand#23", "MED BOX", 7), 34: ("Brand#34", "LG BOX", 12)}
Q19_QTY = {"Brand#12": (1, 11), "Brand#23": (10, 20), "Brand#34": (20, 30)}


def comment(rng: random.Random, n: int = 4) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def tpch(rng: random.Random) -> None:
    d = HERE / "tpch" / "data"
    write_csv(d / "region.csv", "op,r_regionkey,r_name,r_comment",
              [("insert", i, r, comment(rng)) for i, r in enumerate(REGIONS)])
    write_csv(d / "nation.csv", "op,n_nationkey,n_name,n_regionkey,n_comment",
              [("insert", i, n, r, comment(rng)) for i, (n, r) in enumerate(NATIONS)])
    nsupp, ncust, nparts, norders = 20, 45, 40, 160
    supp_nations = [7, 20, 3, 6, 7, 20, 3, 6, 12, 18, 8, 24, 2, 23, 19, 7, 20, 3, 2, 22]
    sups = []
    for s in range(1, nsupp + 1):
        c = comment(rng)
        if s in (4, 13):
            c = "slyly Customer even Complaints carefully"
        sups.append(("insert", s, "Supplier#%09d" % s, "addr%d" % s, supp_nations[s - 1],
                     "%d-%03d-%03d-%04d" % (10 + supp_nations[s - 1], s, s * 7 % 1000, s * 13 % 10000),
                     "%.2f" % rng.uniform(-999, 9999), c))
    write_csv(d / "supplier.csv", "op,s_suppkey,s_name,s_address,s_nationkey,s_phone,s_acctbal,s_comment", sups)
    parts = []
    for p in range(1, nparts + 1):
        name = " ".join(rng.sample(COLORS, 4))
        if p % 5 == 0:
            name = "forest " + name
        ptype = "%s %s %s" % (rng.choice(TYPES1), rng.choice(TYPES2), rng.choice(TYPES3))
        if p % 7 == 0:
            ptype = "ECONOMY ANODIZED STEEL"
        size = rng.choice([15, 15, 49, 14, 23, 45, 19, 3, 36, 9, 1, 5, 10, 20, 30, 40, 50])
        if p % 8 == 0:
            ptype, size = "MEDIUM POLISHED BRASS", 15
        brand = "Brand#%d%d" % (rng.randint(1, 5), rng.randint(1, 5))
        cont = "%s %s" % (rng.choice(CONT1), rng.choice(CONT2))
        if p in Q19_PARTS:                 # parts Q17 and Q19 look for
            brand, cont, size = Q19_PARTS[p]
        parts.append(("insert", p, name, "Manufacturer#%s" % brand[6], brand, ptype, size, cont,
                      "%.2f" % (900 + p + (p % 100) / 10), comment(rng, 2)))
    write_csv(d / "part.csv", "op,p_partkey,p_name,p_mfgr,p_brand,p_type,p_size,p_container,p_retailprice,p_comment",
              parts)
    ps = []
    part_supps = {}
    for p in range(1, nparts + 1):
        ss = {(p + i * (nsupp // 4 + (p - 1) // nsupp)) % nsupp + 1 for i in range(4)}
        if p % 5 == 0:
            ss.add(3)                      # forest parts from a CANADA supplier (Q20)
        ss = sorted(ss)
        part_supps[p] = ss
        for s in ss:
            ps.append(("insert", p, s, rng.randint(1, 9999), "%.2f" % rng.uniform(1, 1000), comment(rng)))
    write_csv(d / "partsupp.csv", "op,ps_partkey,ps_suppkey,ps_availqty,ps_supplycost,ps_comment", ps)
    custs = []
    for c in range(1, ncust + 1):
        nk = rng.randrange(25)
        custs.append(("insert", c, "Customer#%09d" % c, "caddr%d" % c, nk,
                      "%d-%03d-%03d-%04d" % (10 + nk, c, c * 3 % 1000, c * 11 % 10000),
                      "%.2f" % rng.uniform(-999, 9999), rng.choice(SEGMENTS), comment(rng)))
    write_csv(d / "customer.csv", "op,c_custkey,c_name,c_address,c_nationkey,c_phone,c_acctbal,c_mktsegment,c_comment",
              custs)
    orders, lines = [], []
    start, end = dt.date(1992, 1, 1), dt.date(1998, 8, 2)
    span = (end - start).days
    for o in range(1, norders + 1):
        ok = o if o <= 8 else o * 4 - rng.randint(0, 3)   # sparse keys, like dbgen's
        cust = rng.choice([c for c in range(1, ncust + 1) if c % 3 != 0])
        odate = start + dt.timedelta(days=rng.randint(0, span - 151))
        if o % 12 == 0:
            odate = dt.date(1995, 3, 1) + dt.timedelta(days=rng.randint(0, 30))
        if o % 12 == 6:
            odate = dt.date(1995, 7, 20) + dt.timedelta(days=rng.randint(0, 30))
        if o % 6 == 1:
            odate = dt.date(1994, 1, 1) + dt.timedelta(days=rng.randint(0, 364))
        n = rng.randint(1, 7)
        total = 0.0
        statuses = set()
        for ln in range(1, n + 1):
            p = rng.randint(1, nparts)
            s = rng.choice(part_supps[p])
            late_one = o % 10 == 3              # Q21: line 1 from SAUDI ARABIA late, the others on time
            if late_one and ln == 1:
                p = rng.choice([q for q in part_supps if 2 in part_supps[q]])
                s = 2
            if o % 6 == 1 and ln == 1:          # Q20: forest parts shipped by CANADA in 1994
                p, s = rng.choice([5, 10, 15, 20, 25, 30, 35, 40]), 3
            qty = rng.randint(1, 50)
            if p in Q19_PARTS and rng.random() < 0.8:
                qty = rng.randint(*Q19_QTY[Q19_PARTS[p][0]])
            price = qty * float(parts[p - 1][8])
            disc = rng.randint(0, 10) / 100
            tax = rng.randint(0, 8) / 100
            ship = odate + dt.timedelta(days=rng.randint(1, 121))
            commit = odate + dt.timedelta(days=rng.randint(30, 90))
            receipt = ship + dt.timedelta(days=rng.randint(1, 30))
            if late_one:
                commit = receipt - dt.timedelta(days=5) if ln == 1 else receipt + dt.timedelta(days=3)
            rflag = rng.choice("RA") if receipt <= dt.date(1995, 6, 17) else "N"
            lstatus = "O" if ship > dt.date(1995, 6, 17) else "F"
            statuses.add(lstatus)
            total += price * (1 + tax) * (1 - disc)
            instruct, mode = rng.choice(INSTRUCT), rng.choice(MODES)
            if p in Q19_PARTS and rng.random() < 0.8:
                instruct, mode = "DELIVER IN PERSON", "AIR"
            lines.append(("insert", ok, p, s, ln, qty, "%.2f" % price, "%.2f" % disc, "%.2f" % tax, rflag, lstatus,
                          ship.isoformat(), commit.isoformat(), receipt.isoformat(), instruct, mode,
                          comment(rng, 3)))
        ostatus = "F" if statuses == {"F"} else "O" if statuses == {"O"} else "P"
        ocomment = "special packages requests" if o % 11 == 0 else comment(rng)
        orders.append(("insert", ok, cust, ostatus, "%.2f" % total, odate.isoformat(), rng.choice(PRIORITIES),
                       "Clerk#%09d" % rng.randint(1, 20), 0, ocomment))
    write_csv(d / "orders.csv", "op,o_orderkey,o_custkey,o_orderstatus,o_totalprice,o_orderdate,o_orderpriority,"
              "o_clerk,o_shippriority,o_comment", orders)
    write_csv(d / "lineitem.csv", "op,l_orderkey,l_partkey,l_suppkey,l_linenumber,l_quantity,l_extendedprice,"
              "l_discount,l_tax,l_returnflag,l_linestatus,l_shipdate,l_commitdate,l_receiptdate,l_shipinstruct,"
              "l_shipmode,l_comment", lines)


# ---------------------------------------------------------------------------------------- shop
def shop(rng: random.Random) -> None:
    d = HERE / "shop" / "data"
    names = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Donald", "Edsger", "Frances", "Ken"]
    countries = ["UK", "US", "FI", "US", "UK", "US", "US", "NL", "US", "US"]
    write_csv(d / "customers.csv", "id,name,country", [(i + 1, n, countries[i]) for i, n in enumerate(names)])
    write_csv(d / "orders.csv", "id,customer_id,amount,day",
              [(i, rng.randint(1, 9), "%.2f" % (rng.randint(100, 9999) / 100), day(dt.date(2024, 5, 1), rng.randint(0, 9)))
               for i in range(1, 41)])


# ---------------------------------------------------------------------------------------- app
def app(rng: random.Random) -> None:
    d = HERE / "app" / "data"
    countries = ["DE", "FR", "US", "US", "BR", None]
    plans = ["free", "free", "pro", "team"]
    users = []
    for u in range(1, 41):
        users.append(("insert", u, "user%d@example.com" % u, "User %d" % u, rng.choice(countries), rng.choice(plans),
                      day(dt.date(2024, 1, 1), rng.randint(0, 60)), rng.choice([None, None, rng.randint(1, u)])))
    write_csv(d / "users.csv", "op,id,email,name,country,plan,signup_day,referred_by", users)
    kinds = ["view", "view", "view", "click", "click", "purchase", "refund"]
    events = []
    for e in range(1, 201):
        k = rng.choice(kinds)
        amount = "%.2f" % rng.uniform(1, 200) if k in ("purchase", "refund") else None
        user = rng.randint(1, 44)                  # users 41-44 do not exist: orphan events
        events.append(("insert", e, user, k, amount, day(dt.date(2024, 2, 1), rng.randint(0, 20))))
    write_csv(d / "events.csv", "op,id,user_id,kind,amount,day", events)
    games = ["chess", "go", "tetris"]
    acc = random.Random(40)                        # its own stream: the tables after scores stay as they were
    scores = [("insert", s, rng.randint(1, 40), rng.choice(games), rng.randint(0, 1000),
               day(dt.date(2024, 3, 1), rng.randint(0, 10)), repr(acc.random())) for s in range(1, 91)]
    write_csv(d / "scores.csv", "op,id,user_id,game,score,played_on,accuracy", scores)
    ups = []
    for i in range(1, 71):
        u = rng.randint(1, 40)
        ups.append(("insert", i, u, "u%d.v%d@example.org" % (u, i), rng.choice(["DE", "FR", "US", None]),
                    "2024-02-%02d %02d:00:00" % (rng.randint(1, 28), rng.randint(0, 23))))
    write_csv(d / "profile_updates.csv", "op,id,user_id,email,country,updated_at", ups)
    mem = set()
    while len(mem) < 50:
        mem.add((rng.choice(["alpha", "beta", "staff"]), rng.randint(1, 40)))
    write_csv(d / "memberships.csv", "op,team,user_id,role", [("insert", t, u, rng.choice(["member", "admin"]))
                                                              for t, u in sorted(mem)])
    subs = []
    for s in range(1, 31):
        u = rng.randint(1, 46)                     # some subscriptions' users are unknown
        subs.append(("insert", s, u, rng.choice(["pro", "team"]), "%.2f" % rng.choice([9, 19, 49]),
                     day(dt.date(2024, 1, 1), rng.randint(0, 40))))
    write_csv(d / "subscriptions.csv", "op,id,user_id,plan,price,started", subs)
    srng = random.Random(41)                       # its own stream: the tables above stay as they were
    sessions = []
    for s in range(1, 61):
        start = dt.datetime(2024, 2, 1) + dt.timedelta(minutes=srng.randint(0, 20 * 24 * 60))
        end = start + dt.timedelta(seconds=srng.randint(5, 3 * 3600)) if s % 9 else None   # some still open
        sessions.append(("insert", s, srng.randint(1, 40), srng.choice(["web", "ios", "android"]),
                         start.isoformat(sep=" "), end.isoformat(sep=" ") if end else None))
    write_csv(d / "sessions.csv", "op,id,user_id,device,started_at,ended_at", sessions)


if __name__ == "__main__":
    jaffle(random.Random(1))
    tpch(random.Random(2))
    shop(random.Random(3))
    app(random.Random(4))
