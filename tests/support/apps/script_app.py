"""A user's script that serves its own handler: ``python script_app.py --kind KIND``.

It takes the flags ServerProcess gives (``--host``, ``--port``, ``--loop``) and calls
``aiotcp.serve`` with a function (``function``), an App (``app``) or a handler object
(``object``), as ``python myapp.py`` does.
"""

import argparse

import aiotcp


def handle(message: str, conn: object) -> str:
    return "mine: " + message


app = aiotcp.App()


@app.handler
def handle_in_app(message: str, conn: object) -> str:
    return "mine: " + message


class Shout:
    def __call__(self, message: str, conn: object) -> str:
        return message.upper()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--host", "--kind"):
        parser.add_argument(flag)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    served = {"function": handle, "app": app, "object": Shout()}[args.kind]
    raise SystemExit(aiotcp.serve(served, host=args.host, port=args.port, loop=args.loop))
