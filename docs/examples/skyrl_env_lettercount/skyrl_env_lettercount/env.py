"""The `letter_count` environment: how many times does a letter occur in a word?"""

from skyrl_core.api import StepOutput, TextEnv, last_boxed, parse_integer
from skyrl_env_lettercount.config import LetterCountConfig


class LetterCountEnv(TextEnv):
    """Reward `correct_reward` when the integer in the reply's last \\boxed{} is the count.

    One instance per trajectory. `extras` is the dataset row: `reward_spec.ground_truth`
    holds the count, `max_turns` the number of tries.
    """

    def __init__(self, config: LetterCountConfig, extras: dict) -> None:
        super().__init__(config, extras)
        self.target = int(extras["reward_spec"]["ground_truth"])  # bad data raises: the trajectory fails
        self.solved = False

    def step(self, action: str) -> StepOutput:
        self.turns += 1
        guess = parse_integer(last_boxed(action))  # None for anything unparsable: never raise on replies
        self.solved = guess == self.target
        if self.solved:
            return StepOutput(reward=self.config.correct_reward, done=True)
        if self.turns >= self.max_turns or not self.config.feedback:
            return StepOutput(reward=0.0, done=True)
        hint = "Put the count in \\boxed{}." if guess is None else "Too high." if guess > self.target else "Too low."
        return StepOutput(observations=[{"role": "user", "content": hint + " Try again."}], done=False)

    def get_metrics(self) -> dict[str, float]:
        return {"solved": float(self.solved), "turns": float(self.turns)}
