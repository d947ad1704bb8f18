from tests.conftest import LIGHT_MODEL


def test_chat_completion_through_the_sdk(client):
    answer = client.chat.completions.create(model="gpt-3.5-turbo",
                                            messages=[{"role": "user", "content": "Where is my parcel?"}])
    assert answer.model == LIGHT_MODEL
    assert answer.choices[0].message.content
    assert answer.usage.total_tokens > 0
