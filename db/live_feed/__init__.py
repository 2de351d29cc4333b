"""The live feed: recorded events announced by PostgreSQL NOTIFY and fanned out to subscribers.

- `notifications`: what an inserting statement announces, and how a payload is read back;
- `hub`: one LISTEN connection per process, handing each event to matching subscribers;
- `matching`: the filters evaluated on an event in Python (and the few questions only SQL answers);
- `subscription`: one subscriber's bounded queue, and the reasons a subscription ends;
- `follow`: every event after a position, from the table and then live, riding out feed losses.
"""
