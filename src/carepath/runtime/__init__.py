"""The only package that imports Prefect: flows (`flows.py`), the artifacts they leave
(`artifacts.py`), the job behind `carepath run` (`runner.py`) and sending events into
Prefect (`events.py`). Everything clinical happens in the layers below; these modules
only schedule it and report counts and pseudonymous refs.
"""
