"""Chapter 08's pass@1 measurement: prompts, code taken from replies, and the table per family (a scripted model)."""

from __future__ import annotations

import json

from slmlab.execution.scoring import score_program
from slmlab.execution.tasks import extract_code, load_code_tasks, load_humaneval, task_prompt
from slmlab.rl.evaluate import by_family, pass_at_1
from slmlab.rl.tasks import default_tasks_dir

TASKS = {task.name: task for task in load_code_tasks(default_tasks_dir())}


def test_extract_code_takes_the_first_fenced_block_or_the_code_part():
    reply = "Sure!\n```python\ndef f(x):\n    return x\n```\nThis returns x.\n```python\nprint(1)\n```"
    assert extract_code(reply) == "def f(x):\n    return x\n"
    assert extract_code("Here it is:\ndef f(x):\n    return x") == "def f(x):\n    return x\n"
    assert extract_code("```\nx = 1\n") == "x = 1\n"  # an unclosed, unlabeled fence


def test_a_humaneval_body_without_its_def_gets_the_prompt_back():
    task = load_humaneval()[0]
    body = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    assert extract_code(body, task).startswith(task.prompt)


def test_a_humaneval_function_written_again_gets_the_prompts_imports():
    task = load_humaneval()[0]  # its prompt starts "from typing import List"
    rewritten = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n"
    code = extract_code(f"```python\n{rewritten}```", task)
    assert code == "from typing import List\n" + rewritten
    assert extract_code(f"```python\nfrom typing import List\n{rewritten}```", task).count("import") == 1
    without = score_program(task, rewritten)
    assert without.status == "runtime_error" and "NameError" in json.dumps(without.details)  # List is not defined
    assert score_program(task, code).status not in ("runtime_error", "error")  # it loads, and is judged


def test_prompts_name_the_signature_and_ask_for_a_code_block():
    task = TASKS["add_six"]
    prompt = task_prompt(task, hint="Use +.")
    assert task.prompt in prompt and task.signature in prompt and "```python" in prompt and prompt.endswith("Hint: Use +.")


class ScriptedModel:
    """Answers each prompt from a table, as an slmlab model's generate() would."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, config=None, progress=False):
        return [self.answers[next(name for name in self.answers if f"`{name}(" in prompt)] for prompt in prompts]


def test_pass_at_1_scores_replies_in_the_sandbox_and_groups_by_family():
    tasks = [TASKS["add_six"], TASKS["add_two"], TASKS["reverse_string"]]
    model = ScriptedModel(
        {
            "add_six": "```python\ndef add_six(x):\n    return x + 6\n```",
            "add_two": "```python\ndef add_two(x):\n    return x + 3\n```",
            "reverse_string": "def reverse_string(s):\n    return s[::-1]\n",
        }
    )
    results = pass_at_1(model, tasks)
    assert list(results["solved"]) == [True, False, True]
    assert results.loc[1, "status"] == "wrong_answer"
    table = by_family(results)
    assert table.loc["add_constant", "pass_at_1"] == 0.5 and table.loc["all", "tasks"] == 3
