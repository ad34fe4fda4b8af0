"""The one hand-off from the model hub to the apps above it: an answer is about to be stored as
finished. The hub knows nothing of those apps; they connect receivers in their AppConfig.ready
(today: arena.apps connects arena.receivers.battle_leak_on_finish, which flags a battle whose
answer names one of its models).

`generation_finishing` — the contract:

- Sender: modelhub.services.lifecycle.generation_finish, the only place a generation reaches a
  terminal state (done, error, cancelled): on a worker for a streamed answer, in the web process
  for a queued answer stopped, in the reaper for a silent worker's. Sent once per generation, with
  `sender=Generation` and `generation=` the instance, its terminal status, text, finish_reason and
  error set in memory.
- When: before the terminal state is written to PostgreSQL and before the terminal frame reaches
  the stream. Whoever can see the answer finished (a vote, a browser) sees what receivers wrote.
- Transaction: none of its own. Outside a transaction (a worker finishing a stream) each statement
  of a receiver commits on its own, before the finished answer's UPDATE; inside a caller's
  transaction (a stop, the reaper) receivers run in a savepoint of it.
- Receivers may read and write their own app's tables. They must not change the generation (the
  finished state is written after them, from the instance as the sender set it), must not block
  on the network, and should be quick: they run on the path of every answer's end. A receiver that
  raises is logged and its savepoint, if any, rolled back; the answer is stored all the same.
"""

from django.dispatch import Signal

generation_finishing = Signal()
