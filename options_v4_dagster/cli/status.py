"""``options-v4 status [--date D]``: one session's health on one screen, and ``options-v4 audit verify``.

``status`` shows which assets of the session are materialized and from which market-data source
(``session_provenance``), per-symbol failures by asset and stage, the session's allocations and their
approvals, the execution states of their strategies, open positions, exit intents left PARTIAL /
FAILED, alerts by urgency (the latest monitoring snapshot of each strategy) and whether the audit
chain verifies. Exit status 1 when something needs a human: failures, FAILED executions or exits,
HIGH alerts, a broken audit chain; else 0.
"""

from __future__ import annotations

from .output import console, new_table, print_json


def _attention(st, exits_left: list[dict], broken) -> list[str]:
    out = []
    n_fail = sum(f["n"] for f in st.failures)
    if n_fail:
        out.append(f"{n_fail} pipeline failure row(s)")
    if st.executions.get("FAILED"):
        out.append(f"{st.executions['FAILED']} FAILED execution(s)")
    if exits_left:
        out.append(f"{len(exits_left)} exit intent(s) left PARTIAL/FAILED")
    if st.alerts.get("HIGH"):
        out.append(f"{st.alerts['HIGH']} HIGH alert(s)")
    if broken is not None:
        out.append(f"audit chain broken at row {broken.id}: {broken.reason}")
    return out


def cmd_status(args) -> int:
    from options_v4_dagster import calendar
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.audit import verify_audit
    from options_v4_dagster.store.monitoring import intents
    from options_v4_dagster.store.session_status import session_status

    wh = Warehouse.from_env()
    session = args.date or calendar.latest_session()
    st = session_status(wh, session)
    exits_left = intents(wh, states=("PARTIAL", "FAILED"))
    broken = verify_audit(wh)
    attention = _attention(st, exits_left, broken)
    if args.json:
        print_json({"session": session.isoformat(), "provenance": st.provenance, "failures": st.failures,
                    "allocations": st.allocations, "executions": st.executions,
                    "open_positions": st.open_positions, "alerts": st.alerts,
                    "exits_left": [i["intent_key"] for i in exits_left],
                    "audit_ok": broken is None, "attention": attention}, default=str)
        return 1 if attention else 0
    console.print(f"[bold]session {session}[/bold]")
    if st.provenance:
        console.print("materialized: " + ", ".join(f"{a} ({s})" for a, s in st.provenance.items()))
    else:
        console.print("[yellow]nothing materialized for this session[/yellow]")
    if st.failures:
        t = new_table("failures by stage", ("asset", "stage", "kind", "rows"), right=("rows",))
        for f in st.failures:
            t.add_row(f["asset"], f["stage"], f["kind"], str(f["n"]))
        console.print(t)
    else:
        console.print("failures: none")
    for a in st.allocations:
        apps = ", ".join(f"{p['approval_id']} by {p['approved_by']}" for p in a["approvals"]) or "not approved"
        console.print(f"allocation {a['allocation_id'][:12]}: {a['positions']} position(s), capital "
                      f"{a['capital']:,.0f}; approval: {apps}")
    if not st.allocations:
        console.print("allocation: none")
    console.print("executions: " + (", ".join(f"{k} {v}" for k, v in sorted(st.executions.items())) or "none"))
    console.print(f"open positions: {st.open_positions}")
    for i in exits_left:
        console.print(f"  [red]exit {i['intent_key']} {i['state']}[/red]: {i['note'] or ''}")
    alerts = ", ".join(f"{u} {n}" for u, n in sorted(st.alerts.items())) or "none"
    console.print(f"alerts: {alerts}" + (f" (snapshot {st.snapshots_at:%Y-%m-%d %H:%M} UTC)" if st.snapshots_at else ""))
    console.print("audit chain: " + ("verified" if broken is None else f"[red]broken at row {broken.id}[/red]"))
    if attention:
        console.print("[bold red]needs attention:[/bold red] " + "; ".join(attention))
        return 1
    console.print("[green]all clear[/green]")
    return 0


def cmd_audit(args) -> int:
    import sys

    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.audit import audit_rows, verify_audit

    wh = Warehouse.from_env()
    broken = verify_audit(wh)
    if broken is not None:
        print(f"audit chain broken at row {broken.id}: {broken.reason}", file=sys.stderr)
        return 1
    console.print(f"audit chain verified: {audit_rows(wh).height} row(s)")
    return 0
