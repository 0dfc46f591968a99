"""The request lexicons (digest_mailer/inbox/lexicon.py) on sentences readers write.

For each of the seven languages: sentences asking to unsubscribe, sentences asking to
subscribe, and sentences that ask for neither or are about somebody else (a colleague who
left, a named person, a question, thanks, a request for both at once). Each is sent as a
minimal message and must get its label; the "neither" ones must be held for review, never
change the sender's subscription. A few are sent in the language's legacy charset too.

The sentences were written as readers write them (polite and curt forms, particles,
typos), not from the lexicon's entries. The "review" lists also hold the near misses that
must not move anybody: requests about someone else, "please don't unsubscribe me",
"the digest stopped arriving" complaints, and questions.
"""

import pytest

from digest_mailer.inbox.classify import OurAddresses, Policy, decide, parse

POLICY = Policy(OurAddresses.of("digest@policy.test"))

SENDERS = {
    "en": "sam.ortiz@mail.test",
    "ja": "hanako@jp-mail.test",
    "ko": "minji@kr-mail.test",
    "zh-hans": "wei@cn-mail.test",
    "zh-hant": "mei@tw-mail.test",
    "de": "jonas@de-mail.test",
    "fr": "camille@fr-mail.test",
    "es": "lucia@es-mail.test",
}

# language -> label -> sentences; "review" holds the ones that are neither
CASES: dict[str, dict[str, list[str]]] = {
    "en": {
        "unsubscribe": [
            "Please unsubscribe me.",
            "unsubcribe",
            "pls remove me from this list",
            "Take me off your mailing list, thanks.",
            "I no longer wish to receive these emails.",
            "Stop sending me this newsletter.",
            "Could you please remove my email address from your distribution list?",
            "Please cancel my subscription to the digest.",
            "I never signed up for this. Remove me.",
            "STOP",
            "Opt me out please",
            "unsuscribe",
            "I don't want to get these anymore.",
            "Kindly remove me from your mailing list.",
            "I'd like to be removed from the mailing list.",
            "Please don't send me the digest anymore.",
            "No longer interested, please unsubscribe.",
            "I'm not interested anymore, please take me off.",
            "Please delete my email address from your records.",
            "I have no further need for the digest, thank you.",
        ],
        "subscribe": [
            "Please add me to the mailing list.",
            "Sign me up!",
            "I'd like to receive the digest.",
            "subscribe",
            "Could you put me on the list? Thanks.",
            "A friend forwarded me the digest and I'd love to get it directly.",
            "Count me in.",
            "Subcribe me please",
            "Please include me in the distribution list.",
            "I want to join the mailing list.",
            "add me pls",
            "Please send me the newsletter every week.",
            "Hi, I heard about the digest at the conference, could you sign me up?",
            "Would you be able to place me on your mailing list?",
            "Please enrol me for the weekly digest.",
            "Could you send the digest to me as well?",
        ],
        "review": [
            "My colleague Sarah left the company last month, please unsubscribe her.",
            "How often does the digest come out?",
            "Thanks, this week's issue was excellent!",
            "Please unsubscribe my old address and subscribe me at this one instead.",
            "Could you add my boss to the list?",
            "She no longer works here, please remove her from the list.",
            "Please unsubscribe him, he retired in May.",
            "Is there a web archive of past issues?",
            "I haven't received the digest for three weeks, is something wrong?",
            "Please don't unsubscribe me, I still read every issue.",
            "Who put me on this list?",
        ],
    },
    "ja": {
        "unsubscribe": [
            "配信停止をお願いします。",
            "購読を解除したいです。",
            "メルマガの配信を止めてください。",
            "もう送らないでください。",
            "このメールの受信を停止したいのですが。",
            "今後の配信は不要です。",
            "ダイジェストの購読をやめます。",
            "登録を解除してください。",
            "メールマガジンの配信を解除していただけますでしょうか。",
            "配信リストから外してください。",
            "退会希望です。",
            "ニュースレターはもう結構です。",
            "配信停止希望",
            "メールが多いので配信をストップしてください。",
            "もうメールを受け取りたくないです。",
            "お手数ですが、配信を止めていただけますか。",
            "配信しないでください。",
            "メルマガを解約したいです。",
            "異動のため、メルマガの受信を終了したいと思います。",
            "今後はお送りいただかなくて大丈夫です。",
            "他のメールに埋もれてしまうので、配信を停止してください。",
            "配信を希望しません。",
        ],
        "subscribe": [
            "購読を希望します。",
            "配信登録をお願いします。",
            "ニュースレターを購読したいです。",
            "メルマガを受け取りたいです。",
            "私も登録していただけますか。",
            "ダイジェストを送っていただけませんか。",
            "配信リストに追加してください。",
            "ぜひ購読させてください。",
            "購読を申し込みます。",
            "毎号読みたいので、送ってください。",
            "メールマガジンに登録したいです。",
            "登録希望",
        ],
        "review": [
            "同僚の田中が退職しましたので、彼の配信を停止してください。",
            "上司の分も登録をお願いします。",
            "次号はいつ届きますか？",
            "いつも楽しく読んでいます。ありがとうございます。",
            "古いアドレスの配信を停止して、新しいアドレスに登録してください。",
            "過去の号はどこで読めますか？",
            "鈴木さんの配信を止めてください。",
            "先週からメルマガが届いていません。確認をお願いします。",
            "配信を停止しないでください。まだ読んでいます。",
            "配信はいつ終了しますか？",
            "他の方にも登録をお願いしたいです。",
        ],
    },
    "ko": {
        "unsubscribe": [
            "구독 취소해 주세요.",
            "구독을 해지하고 싶습니다.",
            "더 이상 메일을 받고 싶지 않습니다.",
            "수신 거부합니다.",
            "뉴스레터 그만 보내주세요.",
            "메일링 리스트에서 저를 빼 주세요.",
            "수신을 원하지 않습니다.",
            "구독 해지 부탁드립니다.",
            "이메일 발송을 중단해 주시기 바랍니다.",
            "구독취소요",
            "이제 그만 받을게요.",
            "메일 수신 거부 요청드립니다.",
            "이제 안 보내주셔도 됩니다.",
            "이 메일 그만 받고 싶어요.",
            "뉴스레터 수신을 중지해 주세요.",
            "구독 끊어주세요",
            "뉴스레터를 받아보고 싶지 않습니다.",
            "저도 더 이상 받아보고 싶지 않아요.",
            "구독 희망하지 않습니다.",
            "구독 신청한 적이 없는데 메일이 와요.",
            "저도 더 이상 받아보지 않을게요.",
        ],
        "subscribe": [
            "구독 신청합니다.",
            "뉴스레터를 구독하고 싶습니다.",
            "저도 메일링 리스트에 추가해 주세요.",
            "다이제스트를 받아보고 싶어요.",
            "구독 원합니다.",
            "매주 뉴스레터 보내주세요.",
            "구독하겠습니다.",
            "구독 부탁드립니다.",
            "저를 수신자 명단에 넣어 주세요.",
            "뉴스레터 신청이요.",
            "구독 희망합니다.",
            "저도 받아 보고 싶습니다.",
            "저도 받아볼 수 있을까요?",
        ],
        "review": [
            "제 동료가 퇴사했으니 그분 메일은 빼 주세요.",
            "팀장님도 구독 신청해 주실 수 있나요?",
            "다음 호는 언제 나오나요?",
            "좋은 글 항상 감사합니다!",
            "이전 주소는 구독 취소하고 이 주소로 구독 신청해 주세요.",
            "지난 호를 볼 수 있는 곳이 있나요?",
            "김민수 님을 명단에서 빼 주세요.",
            "지난주부터 뉴스레터가 안 와요. 확인 부탁드립니다.",
            "구독 취소하지 말아 주세요.",
        ],
    },
    "zh-hans": {
        "unsubscribe": [
            "请取消订阅。",
            "我要退订。",
            "不要再给我发邮件了。",
            "请把我从邮件列表中删除。",
            "我不想再收到这些邮件。",
            "麻烦帮我退订一下，谢谢。",
            "请停止发送简报给我。",
            "取消我的订阅。",
            "以后不用再发了。",
            "请将我的邮箱移出名单。",
            "我已经不需要这份简报了。",
            "别再发了。",
            "退订",
            "请停止推送。",
            "我不希望再收到这类邮件。",
            "不想收了，麻烦取消一下。",
        ],
        "subscribe": [
            "我想订阅你们的简报。",
            "请把我加入邮件列表。",
            "麻烦帮我订阅一下。",
            "希望能收到每期的简报。",
            "订阅",
            "我要订阅。",
            "请发送给我，谢谢。",
            "请加我到你们的邮件列表。",
            "我也想收到这份简报。",
            "能不能把我加入订阅名单？",
            "申请订阅。",
            "你好，我想订阅电子报，谢谢！",
        ],
        "review": [
            "我同事已经离职了，请取消他的订阅。",
            "请问简报多久发一期？",
            "谢谢你们的简报，内容很有用！",
            "请取消旧邮箱的订阅，改用这个邮箱订阅。",
            "帮我老板也订阅一份。",
            "往期的内容在哪里可以看到？",
            "请帮王经理退订。",
            "最近几期都没收到，是不是出问题了？",
            "请不要取消我的订阅。",
            "需不需要订阅才能看？",
        ],
    },
    "zh-hant": {
        "unsubscribe": [
            "請取消訂閱。",
            "我要退訂電子報。",
            "請不要再寄信給我了。",
            "麻煩幫我取消訂閱，謝謝。",
            "我不想再收到這些郵件。",
            "請將我從郵寄名單中移除。",
            "不要再寄電子報給我。",
            "請停止發送。",
            "我已經不需要這份電子報了。",
            "取消訂閱",
            "請幫我退訂。",
            "以後別再寄了。",
            "請停止寄送電子報。",
            "我不想再收到了，請移除我的信箱。",
        ],
        "subscribe": [
            "我想訂閱貴單位的電子報。",
            "請幫我訂閱，謝謝！",
            "請把我加入郵寄名單。",
            "希望能收到每期電子報。",
            "我要訂閱。",
            "麻煩將我的信箱加入名單。",
            "申請訂閱。",
            "請寄給我電子報。",
            "我也想收到這份電子報。",
            "訂閱",
            "可以幫我登記訂閱嗎？",
        ],
        "review": [
            "我的同事已經離職，請幫他取消訂閱。",
            "電子報多久寄一次？",
            "謝謝你們，每期都很精彩！",
            "請取消舊信箱的訂閱，改用這個信箱訂閱。",
            "請問可以轉寄給朋友嗎？",
            "請幫我們主管也訂閱一份。",
            "陳先生已經退休了，請幫他退訂。",
            "最近都沒收到電子報，請幫我確認一下。",
            "請不要取消我的訂閱。",
        ],
    },
    "de": {
        "unsubscribe": [
            "Bitte melden Sie mich vom Newsletter ab.",
            "Ich möchte den Newsletter abbestellen.",
            "Bitte streichen Sie mich aus Ihrem Verteiler.",
            "Ich möchte mich abmelden.",
            "Bitte keine E-Mails mehr.",
            "Bitte nehmen Sie mich aus dem Verteiler.",
            "Ich habe mich nie angemeldet, bitte entfernen Sie mich.",
            "Newsletter kündigen",
            "Abmelden",
            "Bitte austragen, danke.",
            "Ich will das nicht mehr bekommen.",
            "Schicken Sie mir bitte keine Mails mehr.",
            "Bitte löschen Sie meine E-Mail-Adresse aus Ihrem Verteiler.",
            "Ich möchte den Newsletter nicht länger erhalten.",
            "Bitte stellen Sie die Zusendung ein.",
            "Ich brauche den Newsletter nicht mehr.",
            "Hallo, bitte abbestellen. Danke!",
            "Ich möchte mein Abo beenden.",
            "Ich würde den Newsletter gerne nicht mehr erhalten.",
            "Ich hätte gerne keinen Newsletter mehr.",
        ],
        "subscribe": [
            "Ich möchte den Newsletter abonnieren.",
            "Bitte nehmen Sie mich in Ihren Verteiler auf.",
            "Bitte melden Sie mich für den Digest an.",
            "Ich würde den Digest gern regelmäßig erhalten.",
            "Könnten Sie mich bitte auf die Liste setzen?",
            "Ich möchte mich für den Newsletter anmelden.",
            "Bitte schicken Sie mir den Digest zu.",
            "Abonnieren",
            "Gern würde ich Ihren Newsletter beziehen.",
            "Ich hätte gerne den Newsletter.",
            "Tragen Sie mich bitte in die Liste ein.",
            "Ich interessiere mich für den Newsletter und würde ihn gerne bekommen.",
            "Bitte melden Sie mich ab sofort für den Newsletter an.",
        ],
        "review": [
            "Unsere frühere Mitarbeiterin erhält den Newsletter noch, bitte abmelden.",
            "Wie oft erscheint der Newsletter?",
            "Vielen Dank für die tolle Ausgabe!",
            "Bitte melden Sie meine alte Adresse ab und nehmen Sie meine neue in den Verteiler auf.",
            "Ist der Newsletter kostenlos?",
            "Ich habe noch keine E-Mail erhalten, ist etwas schiefgelaufen?",
            "Bitte melden Sie Frau Berger ab, sie ist nicht mehr bei uns.",
            "Mein Kollege möchte den Newsletter auch bekommen.",
            "Ich habe den Newsletter seit Mai nicht mehr erhalten.",
            "Ich möchte wissen, warum ich keine Mails mehr bekomme.",
            "Bitte melden Sie mich nicht ab, ich lese den Newsletter gern.",
            "Ich bekomme seit Mai keine E-Mails mehr von Ihnen.",
        ],
    },
    "fr": {
        "unsubscribe": [
            "Merci de me désabonner.",
            "Je souhaite me désinscrire de la newsletter.",
            "Désabonnez-moi, s'il vous plaît.",
            "Veuillez retirer mon adresse de votre liste de diffusion.",
            "Je ne veux plus recevoir ces e-mails.",
            "Arrêtez de m'envoyer la lettre d'information.",
            "Stop, merci.",
            "Je me désabonne.",
            "Supprimez-moi de votre liste.",
            "Je n'ai jamais demandé à recevoir cette lettre, merci de m'enlever de la liste.",
            "Je ne veux plus de vos mails.",
            "Je ne lis plus votre newsletter, merci de ne plus me l'envoyer.",
            "Pouvez-vous me retirer de la liste ?",
            "je veux plus recevoir vos mails",
            "Je souhaiterais être retiré de votre liste de diffusion.",
            "Je voudrais résilier mon abonnement.",
            "Désinscription svp",
        ],
        "subscribe": [
            "Je souhaite m'abonner à votre lettre d'information.",
            "Inscrivez-moi, s'il vous plaît.",
            "Pourriez-vous m'ajouter à la liste de diffusion ?",
            "J'aimerais recevoir le digest chaque semaine.",
            "Je voudrais m'inscrire.",
            "Abonnez-moi svp",
            "Merci de m'envoyer la newsletter.",
            "Je veux bien recevoir vos envois.",
            "Je m'abonne !",
            "Ajoutez-moi à votre liste.",
            "Je suis intéressée par votre lettre, pouvez-vous m'inscrire ?",
            "Demande d'inscription",
        ],
        "review": [
            "Ma collègue a quitté l'entreprise, merci de la désabonner.",
            "À quelle fréquence la lettre paraît-elle ?",
            "Merci pour ce numéro passionnant !",
            "Pouvez-vous désabonner mon ancienne adresse et m'abonner avec celle-ci ?",
            "Inscrivez aussi mon assistant, s'il vous plaît.",
            "Est-il possible de lire les anciens numéros en ligne ?",
            "Merci de désinscrire Mme Petit, elle est partie à la retraite.",
            "Je ne reçois plus la lettre depuis mai, est-ce normal ?",
            "Merci de ne pas me désabonner, je lis chaque numéro.",
            "Bonjour, je voudrais le désabonner, il est parti.",
        ],
    },
    "es": {
        "unsubscribe": [
            "Por favor, denme de baja.",
            "Quiero darme de baja del boletín.",
            "No quiero recibir más correos.",
            "Dejen de enviarme estos correos, por favor.",
            "Bórrenme de la lista.",
            "Cancelar suscripción.",
            "Ya no deseo recibir este boletín.",
            "Baja, por favor.",
            "No me manden más correos.",
            "Solicito la baja de mi correo de su lista de distribución.",
            "Desuscribirme por favor",
            "Quisiera anular mi suscripción.",
            "Ya no me interesa, por favor sáquenme de la lista.",
            "No quiero seguir recibiendo el boletín.",
            "Por favor, no me envíen más el boletín.",
            "Me quiero dar de baja.",
            "Elimínenme de su lista de correo, gracias.",
            "Me gustaría no recibir más correos.",
        ],
        "subscribe": [
            "Quiero suscribirme al boletín.",
            "Me gustaría recibir el resumen semanal.",
            "Por favor, agréguenme a la lista de correo.",
            "Quisiera darme de alta en la lista.",
            "Deseo recibir el boletín por correo.",
            "Inclúyanme en su lista de distribución, por favor.",
            "Envíenme el boletín, por favor.",
            "¿Podrían suscribirme?",
            "Quiero seguir recibiendo el boletín.",
            "Me interesa recibir sus publicaciones.",
            "Apúntenme a la lista, por favor.",
            "Hola, quisiera suscribirme, gracias.",
        ],
        "review": [
            "Mi compañera se jubiló, por favor denla de baja.",
            "¿Con qué frecuencia sale el boletín?",
            "¡Muchas gracias por el último número!",
            "Den de baja mi correo anterior y suscríbanme con este.",
            "¿Puedo reenviar el boletín a mi equipo?",
            "Por favor, suscriban también a mi jefe.",
            "Por favor den de baja a Carlos Pérez, ya no trabaja aquí.",
            "Ya no me llega el boletín, ¿pueden revisarlo?",
            "Por favor, no me den de baja, sigo leyendo el boletín.",
            "Mi jefe quiere darse de baja.",
        ],
    },
}

# (charset, language, label, sentence): the same requests in the charsets mail clients
# still send them in
LEGACY = [
    ("iso-2022-jp", "ja", "unsubscribe", "配信停止をお願いします。"),
    ("iso-2022-jp", "ja", "unsubscribe", "購読を解除したいです。"),
    ("iso-2022-jp", "ja", "subscribe", "購読を希望します。"),
    ("iso-2022-jp", "ja", "review", "同僚の田中が退職しましたので、彼の配信を停止してください。"),
    ("shift_jis", "ja", "unsubscribe", "メルマガの配信を止めてください。"),
    ("shift_jis", "ja", "unsubscribe", "もうメールを受け取りたくないです。"),
    ("shift_jis", "ja", "subscribe", "メールマガジンに登録したいです。"),
    ("euc-kr", "ko", "unsubscribe", "구독 취소해 주세요."),
    ("euc-kr", "ko", "unsubscribe", "더 이상 메일을 받고 싶지 않습니다."),
    ("euc-kr", "ko", "subscribe", "구독 신청합니다."),
    ("euc-kr", "ko", "review", "제 동료가 퇴사했으니 그분 메일은 빼 주세요."),
    ("gbk", "zh-hans", "unsubscribe", "请取消订阅。"),
    ("gbk", "zh-hans", "unsubscribe", "我不想再收到这些邮件。"),
    ("gbk", "zh-hans", "subscribe", "我想订阅你们的简报。"),
    ("gbk", "zh-hans", "review", "我同事已经离职了，请取消他的订阅。"),
    ("big5", "zh-hant", "unsubscribe", "請取消訂閱。"),
    ("big5", "zh-hant", "unsubscribe", "請將我從郵寄名單中移除。"),
    ("big5", "zh-hant", "subscribe", "我想訂閱貴單位的電子報。"),
    ("iso-8859-1", "de", "unsubscribe", "Ich möchte den Newsletter abbestellen."),
    ("iso-8859-1", "de", "subscribe", "Ich würde den Digest gern regelmäßig erhalten."),
    ("iso-8859-1", "fr", "unsubscribe", "Désabonnez-moi, s'il vous plaît."),
    (
        "iso-8859-1",
        "fr",
        "subscribe",
        "Je suis intéressée par votre lettre, pouvez-vous m'inscrire ?",
    ),
    ("iso-8859-1", "es", "unsubscribe", "Ya no me interesa, por favor sáquenme de la lista."),
    ("iso-8859-1", "es", "subscribe", "¿Podrían suscribirme?"),
]

# a reader's own wish, not a bulk-mail footer's instruction ("To unsubscribe, click…")
KNOWN = [
    ("en", "unsubscribe", "I want to unsubscribe."),
    ("en", "unsubscribe", "I would like to unsubscribe from the digest."),
    ("en", "unsubscribe", "I would like to stop receiving the digest."),
]


def message(sender: str, sentence: str, charset: str = "utf-8") -> bytes:
    transfer = "7bit" if charset.lower() == "iso-2022-jp" else "8bit"
    head = (
        f"From: Reader <{sender}>\r\n"
        "To: digest@policy.test\r\n"
        "Subject: Re: Policy Digest\r\n"
        "Message-ID: <lexicon-test@mail.test>\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {transfer}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + sentence.encode(charset) + b"\r\n"


def label_of(raw: bytes) -> str:
    return str(decide(parse(raw), POLICY).label)


def _params() -> list:  # type: ignore[type-arg]
    out = []
    for lang, labels in CASES.items():
        for label, sentences in labels.items():
            for i, sentence in enumerate(sentences, 1):
                out.append(pytest.param(lang, label, sentence, id=f"{lang}-{label}-{i:02d}"))
    for i, (lang, label, sentence) in enumerate(KNOWN, 1):
        out.append(pytest.param(lang, label, sentence, id=f"{lang}-wish-{i:02d}"))
    return out


def test_every_language_has_enough_sentences() -> None:
    assert sorted(CASES) == sorted(SENDERS)
    for lang, labels in CASES.items():
        assert len(labels["unsubscribe"]) >= 12, lang
        assert len(labels["subscribe"]) >= 10, lang
        assert len(labels["review"]) >= 6, lang
        every = [s for sentences in labels.values() for s in sentences]
        assert len(every) == len(set(every)), lang


@pytest.mark.parametrize(("lang", "label", "sentence"), _params())
def test_sentence_label(lang: str, label: str, sentence: str) -> None:
    verdict = decide(parse(message(SENDERS[lang], sentence)), POLICY)
    assert str(verdict.label) == label, verdict.reason
    if label in ("subscribe", "unsubscribe"):
        assert verdict.target == SENDERS[lang]


@pytest.mark.parametrize(
    ("charset", "lang", "label", "sentence"),
    LEGACY,
    ids=[f"{c}-{lang}-{label}-{i:02d}" for i, (c, lang, label, _) in enumerate(LEGACY, 1)],
)
def test_legacy_charset(charset: str, lang: str, label: str, sentence: str) -> None:
    assert sentence in CASES[lang][label]
    raw = message(SENDERS[lang], sentence, charset)
    assert sentence.encode("utf-8") not in raw  # really sent in the legacy charset
    assert label_of(raw) == label
